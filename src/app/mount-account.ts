import { createAccounts } from "../accounts/accounts.ts";
import { accountService } from "../accounts/account-service.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";

/** AccountService: accounts and their sealed credentials; holds nothing to release. */
export function mountAccount(ctx: AppContext): ServiceBinding {
  return accountService(createAccounts({ db: ctx.db, vault: ctx.vault, newId: ctx.newId }));
}
