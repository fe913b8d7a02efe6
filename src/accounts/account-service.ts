import { AccountService } from "../gen/conveer/v1/account_pb.js";
import { bindService, peerKey, principalOf } from "../server/service-binding.ts";
import { statusName } from "./account-status.ts";
import type { Accounts } from "./accounts.ts";

/** AccountService over the accounts domain: validate, call, map. */
export function accountService(accounts: Accounts) {
  return bindService({
    service: AccountService,
    scopes: {
      getCredentials: "credentials:read",
      updateStatus: "accounts:write",
      getAccount: "accounts:read",
      listAccounts: "accounts:read",
      createAccount: "accounts:write",
      importAccounts: "accounts:write",
      getStatusHistory: "accounts:read",
      updateCredentials: "accounts:write",
      // admin, not write: the delete is final (DELETED has no way back) and reaches into the proxy,
      // warming and SMS services, like RemoveProxy's proxies:admin.
      deleteAccount: "accounts:admin",
    },
    impl: {
      getCredentials: (req, ctx) => accounts.credentials(req.accountId, principalOf(ctx).name, ctx.values.get(peerKey)),
      async updateStatus(req, ctx) {
        const { previous } = await accounts.updateStatus(req.accountId, req.status, req.reason, principalOf(ctx).name, ctx.values.get(peerKey));
        return { success: true, previousStatus: statusName(previous) };
      },
      getAccount: (req) => accounts.get(req.accountId),
      async listAccounts(req) {
        const page = await accounts.list(req, req.pageSize, req.pageToken);
        return { accounts: page.accounts, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
      createAccount: (req, ctx) => accounts.create(req, principalOf(ctx).name, ctx.values.get(peerKey)),
      async importAccounts(req, ctx) {
        const results = await accounts.importMany(req.accounts, principalOf(ctx).name, ctx.values.get(peerKey));
        const imported = results.filter((r) => r.accountId).length;
        return { results, imported, failed: results.length - imported };
      },
      getStatusHistory: async (req) => ({ changes: await accounts.history(req.accountId) }),
      updateCredentials: (req, ctx) => accounts.updateCredentials(req.accountId, req, principalOf(ctx).name, ctx.values.get(peerKey)),
      deleteAccount: (req, ctx) => accounts.delete(req.accountId, req.reason, { name: principalOf(ctx).name, peer: ctx.values.get(peerKey) }),
    },
  });
}
