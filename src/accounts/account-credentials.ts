import type { Account, GetCredentialsResponse } from "../gen/conveer/v1/account_pb.js";
import { notFound } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import type { Actor } from "../audit/audit-log.ts";
import { checkPhone } from "./account-create.ts";
import { toAccount } from "./account-messages.ts";
import * as store from "./account-store.ts";
import { openSecrets, sealSecrets } from "./accounts-context.ts";
import type { AccountsContext, Secrets } from "./accounts-context.ts";

/** An account's sealed secrets: read (audited), and changed. */

/** Decrypted credentials; the audit record is written by the statement that reads them. */
export async function credentials(ctx: AccountsContext, id: string, tokenName: string, peer: string): Promise<GetCredentialsResponse> {
  checkId(id, "account_id");
  const row = await ctx.secretsAudited({ id, name: tokenName, peer });
  if (!row) throw notFound("account", id);
  const s = await openSecrets(ctx, id, row.secrets);
  return { $typeName: "conveer.GetCredentialsResponse", login: row.login, password: s.password, phone: s.phone, additional: s.additional };
}

/** Replaces password/phone when given and merges `additional` (an empty value removes a key); audited with the names of what changed, never the values. */
export async function updateCredentials(ctx: AccountsContext, id: string, change: { password: string; phone: string; additional: Record<string, string> }, who: Actor): Promise<Account> {
  checkId(id, "account_id");
  checkPhone(change.phone);
  // Read, merge, and write back only if nothing changed the secrets meanwhile (another update, a
  // key rotation): then merge into the newer ones. One statement writes the row and its audit.
  for (;;) {
    const cur = await store.getAccount(ctx.db, id);
    if (!cur) throw notFound("account", id);
    const s = await openSecrets(ctx, id, cur.secrets);
    const additional = { ...s.additional };
    for (const [k, v] of Object.entries(change.additional)) {
      if (v === "") delete additional[k];
      else additional[k] = v;
    }
    const next: Secrets = { password: change.password || s.password, phone: change.phone || s.phone, additional };
    const { sealed, keyId } = sealSecrets(ctx, id, next);
    const row = await store.swapSecrets(ctx.db, id, cur.secrets, { sealed, keyId, hasPhone: Boolean(next.phone) }, who, { action: "account.credentials_update", detail: changedNames(change) });
    if (row) return toAccount(row);
  }
}

/** What an update names (never the values): "password, phone, additional: a, b". */
function changedNames(change: { password: string; phone: string; additional: Record<string, string> }): string {
  const keys = Object.keys(change.additional).sort();
  const parts = [change.password ? "password" : "", change.phone ? "phone" : "", keys.length ? `additional: ${keys.join(", ")}` : ""];
  return parts.filter(Boolean).join(", ") || "nothing";
}
