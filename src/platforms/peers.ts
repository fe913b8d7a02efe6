import type { Client } from "@connectrpc/connect";
import type { AccountService } from "../gen/conveer/v1/account_pb.js";
import type { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { SMSService } from "../gen/conveer/v1/sms_pb.js";

/**
 * What the platform services need from their peers, as typed clients: direct calls when the
 * peer runs in this process, gRPC clients when it does not (src/app.ts decides).
 */
export type PlatformPeers = {
  accounts: Pick<Client<typeof AccountService>, "createAccount" | "getAccount" | "getCredentials" | "updateStatus" | "updateCredentials" | "listAccounts">;
  proxies: Pick<Client<typeof ProxyService>, "allocateProxy" | "getProxyForAccount" | "releaseProxy">;
  sms: Pick<Client<typeof SMSService>, "getNumber" | "getCode" | "cancelActivation">;
};
