import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import type { HandlerContext } from "@connectrpc/connect";
import { AccountService } from "../gen/conveer/v1/account_pb.js";
import { loadConfig } from "../config/config.ts";
import type { ServiceName } from "../config/config.ts";
import { bindService, principalOf } from "../server/service-binding.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import { createPeerResolver } from "./peers.ts";

function accountBinding(seen: string[]): ServiceBinding {
  return bindService({
    service: AccountService,
    scopes: {} as never,
    impl: {
      getAccount: (req: { accountId: string }, ctx: HandlerContext) => {
        seen.push(`${principalOf(ctx).name}:${req.accountId}`);
        return {};
      },
    } as never,
  });
}

test("a configured peer is called directly, its binding looked up at the first call, so it may be mounted later", async () => {
  const bindings: Partial<Record<ServiceName, ServiceBinding>> = {};
  const peer = createPeerResolver(loadConfig({}), ["account", "proxy"], bindings);
  const accounts = peer<typeof AccountService>("account", "proxy-service");
  await assert.rejects(accounts.getAccount({ accountId: "a" }), (err: ConnectError) => err.code === Code.Unavailable && /still starting/.test(err.rawMessage));
  const seen: string[] = [];
  bindings.account = accountBinding(seen);
  await accounts.getAccount({ accountId: "a" });
  assert.deepEqual(seen, ["proxy-service:a"]);
});

test("one client per peer and caller", () => {
  const peer = createPeerResolver(loadConfig({}), ["account"], {});
  assert.equal(peer("account", "warming"), peer("account", "warming"));
  assert.notEqual(peer("account", "warming"), peer("account", "platform-service"));
});

test("a peer this process does not serve is a gRPC client, even when a binding of that name exists", async () => {
  const seen: string[] = [];
  const config = loadConfig({ ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1:1" });
  const peer = createPeerResolver(config, ["proxy"], { account: accountBinding(seen) });
  await assert.rejects(peer<typeof AccountService>("account", "proxy-service").getAccount({ accountId: "a" }, { timeoutMs: 2000 }), (err: ConnectError) => err.code === Code.Unavailable);
  assert.deepEqual(seen, []);
});
