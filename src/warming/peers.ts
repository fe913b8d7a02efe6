import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { AccountStatus, UpdateStatusResponseSchema } from "../gen/conveer/v1/account_pb.js";
import type { AccountService } from "../gen/conveer/v1/account_pb.js";
import type { VKService } from "../gen/conveer/v1/vk_pb.js";
import { statusName } from "../accounts/account-status.ts";
import type { Accounts } from "../accounts/accounts.ts";

/**
 * What warming needs from its peers, as typed clients: direct calls when the peer runs in this
 * process, gRPC clients when it does not (src/app.ts decides). Errors may be AppError (in-process)
 * or ConnectError (remote); warming reads the code from either.
 */
export type WarmingPeers = {
  /** The account's platform and status; WARMING while a task runs, back to ACTIVE when it ends. */
  accounts: Pick<Client<typeof AccountService>, "getAccount" | "updateStatus">;
  /**
   * The platform service for an account's platform (VKService, TelegramService, MailService and
   * MaxService share one shape). For a platform with no service it should throw FAILED_PRECONDITION.
   */
  platforms: (platform: string) => Pick<Client<typeof VKService>, "executeAction">;
};

/**
 * The accounts peer over the in-process accounts domain (when the account service runs in this
 * process): the same calls AccountService would answer, with `author` in the status history.
 */
export function localAccountsPeer(accounts: Accounts, author = "warming"): WarmingPeers["accounts"] {
  return {
    getAccount: (req) => accounts.get(req.accountId ?? ""),
    async updateStatus(req) {
      const { previous } = await accounts.updateStatus(req.accountId ?? "", req.status ?? AccountStatus.UNSPECIFIED, req.reason ?? "", author);
      return create(UpdateStatusResponseSchema, { success: true, previousStatus: statusName(previous) });
    },
  };
}
