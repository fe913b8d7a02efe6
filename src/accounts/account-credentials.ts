import type { Account, GetCredentialsResponse } from "../gen/conveer/v1/account_pb.js";
import { notFound } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { checkPhone } from "./account-create.ts";
import { toAccount } from "./account-messages.ts";
import * as store from "./account-store.ts";
import { openSecrets, sealSecrets } from "./accounts-context.ts";
import type { AccountsContext, Secrets } from "./accounts-context.ts";

/** An account's sealed secrets: read (audited), and changed. */

/** Decrypted credentials; writes the audit record in the same transaction as the read. */
export async function credentials(ctx: AccountsContext, id: string, tokenName: string, peer: string): Promise<GetCredentialsResponse> {
  checkId(id, "account_id");
  const row = await ctx.db.transaction(async (tx) => {
    const r = await store.getAccount(tx, id);
    if (r) await store.insertAudit(tx, id, tokenName, peer);
    return r;
  });
  if (!row) throw notFound("account", id);
  const s = await openSecrets(ctx, id, row.secrets);
  return { $typeName: "conveer.GetCredentialsResponse", login: row.login, password: s.password, phone: s.phone, additional: s.additional };
}

/** Replaces password/phone when given and merges `additional` (an empty value removes a key). */
export async function updateCredentials(ctx: AccountsContext, id: string, change: { password: string; phone: string; additional: Record<string, string> }): Promise<Account> {
  checkId(id, "account_id");
  checkPhone(change.phone);
  const row = await ctx.db.transaction(async (tx) => {
    const cur = await store.lockAccount(tx, id);
    if (!cur) throw notFound("account", id);
    const s = await openSecrets(ctx, id, cur.secrets);
    const additional = { ...s.additional };
    for (const [k, v] of Object.entries(change.additional)) {
      if (v === "") delete additional[k];
      else additional[k] = v;
    }
    const next: Secrets = { password: change.password || s.password, phone: change.phone || s.phone, additional };
    const { sealed, keyId } = sealSecrets(ctx, id, next);
    return store.setSecrets(tx, id, sealed, keyId, Boolean(next.phone));
  });
  return toAccount(row);
}
