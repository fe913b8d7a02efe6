import type { Db } from "../store/db.ts";
import type { Vault } from "../vault/vault.ts";

/** Dependencies of the accounts domain. */
export type AccountsDeps = { db: Db; vault: Vault; newId: () => string };

/** What the accounts domain's module functions take first: its dependencies, as given. */
export type AccountsContext = Readonly<AccountsDeps>;

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
