import type { Client } from "@connectrpc/connect";
import type { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { SMSService } from "../gen/conveer/v1/sms_pb.js";
import type { WarmingService } from "../gen/conveer/v1/warming_pb.js";
import { AppError } from "../errors.ts";
import { batched } from "../store/batched.ts";
import type { Batched } from "../store/batched.ts";
import type { Db } from "../store/db.ts";
import type { Vault } from "../vault/vault.ts";
import { getPublicAccounts, readSecretsAudited } from "./account-store.ts";
import type { AccountRow, AuditedRead, PublicAccountRow } from "./account-store.ts";

/**
 * The services DeleteAccount asks to let go of an account, as typed clients (direct calls in one
 * process, gRPC otherwise; src/app/mount-account.ts wires them). Each is obtained only when the
 * account holds something there, so a deployment without warming or SMS never calls them.
 */
export type AccountPeers = {
  proxies: () => Pick<Client<typeof ProxyService>, "releaseProxy">;
  warming: () => Pick<Client<typeof WarmingService>, "stopWarming">;
  sms: () => Pick<Client<typeof SMSService>, "cancelActivation">;
};

/** Dependencies of the accounts domain; without `peers`, DeleteAccount refuses an account that holds anything. */
export type AccountsDeps = { db: Db; vault: Vault; newId: () => string; peers?: AccountPeers };

/** What the accounts domain's module functions take first: its dependencies, with peers that refuse when none were given. */
export type AccountsContext = Readonly<AccountsDeps & { peers: AccountPeers; publicAccount: Batched<string, PublicAccountRow>; secretsAudited: Batched<AuditedRead, AccountRow> }>;

const noPeer = (): never => {
  throw new AppError("FAILED_PRECONDITION", "this accounts domain has no peer services to release what the account holds");
};

/** The context of the accounts domain. */
export function accountsContext(deps: AccountsDeps): AccountsContext {
  return {
    ...deps,
    peers: deps.peers ?? { proxies: noPeer, warming: noPeer, sms: noPeer },
    // GetAccount, the hottest read (a warming action makes several through peers): batched.
    publicAccount: batched((ids) => getPublicAccounts(deps.db, ids)),
    // GetCredentials, once per warming action: batched with each read's audit record.
    secretsAudited: batched((reads) => readSecretsAudited(deps.db, reads)),
  };
}

/** The secrets sealed per account. */
export type Secrets = { password: string; phone: string; additional: Record<string, string> };

/** The vault's associated data for an account's secrets: binds the sealed blob to its row. */
const aad = (id: string) => `account:${id}`;

/** Seals an account's secrets for storage. */
export function sealSecrets(ctx: AccountsContext, id: string, secrets: Secrets): { sealed: string; keyId: string } {
  return ctx.vault.seal(JSON.stringify(secrets), aad(id));
}

/** Opens an account's stored secrets. */
export async function openSecrets(ctx: AccountsContext, id: string, sealed: string): Promise<Secrets> {
  return JSON.parse(await ctx.vault.open(sealed, aad(id))) as Secrets;
}
