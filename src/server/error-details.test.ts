/**
 * google.rpc error details on the gRPC ports: a plain grpc-js client reads grpc-status-details-bin
 * and decodes google.rpc.Status with BadRequest, ResourceInfo, ErrorInfo; a Connect client finds
 * the same details with findDetails. The status message is the same text as without details.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createRegistry, fromBinary, toBinary, create } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { GetAccountRequestSchema, ListAccountsRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { AllocateProxyRequestSchema } from "../gen/conveer/v1/proxy_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { AppError } from "../errors.ts";
import { statusDetailsBin, toStatus } from "./status.ts";
import { STORE_KINDS } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { rawClient, rawUnary } from "../../test/support/grpc.ts";
import type { RawResult } from "../../test/support/grpc.ts";

const registry = createRegistry(BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema, RetryInfoSchema);

/** The google.rpc.Status a grpc-js client received in grpc-status-details-bin, and its details unpacked. */
function decodeStatus(r: RawResult) {
  const bins = r.metadata?.get("grpc-status-details-bin") ?? [];
  assert.equal(bins.length, 1, `one grpc-status-details-bin trailer (${grpc.status[r.code]}: ${r.details})`);
  const status = fromBinary(StatusSchema, bins[0] as Buffer);
  const details = status.details.map((a) => anyUnpack(a, registry));
  return { status, details };
}

function find<D extends DescMessage>(details: unknown[], desc: D): MessageShape<D> {
  const d = details.find((x) => (x as { $typeName?: string })?.$typeName === desc.typeName);
  assert.ok(d, `a ${desc.typeName} detail`);
  return d as MessageShape<D>;
}

for (const kind of STORE_KINDS) {
  describe(`error details on ${kind}`, () => {
    let sys: TestSystem;
    let account: grpc.Client;
    let proxy: grpc.Client;
    before(async () => {
      sys = await startTestSystem(kind, { services: ["account", "proxy"] });
      account = rawClient(sys.addr("account"));
      proxy = rawClient(sys.addr("proxy"));
    });
    after(async () => {
      account?.close();
      proxy?.close();
      await sys?.stop();
    });

    test("INVALID_ARGUMENT carries a BadRequest field violation naming the field; the message is unchanged", async () => {
      const body = Buffer.from(toBinary(ListAccountsRequestSchema, create(ListAccountsRequestSchema, { pageSize: 5000 })));
      const r = await rawUnary(account, "/conveer.AccountService/ListAccounts", body);
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(r.details, "page_size must be between 1 and 1000, got 5000");
      const { status, details } = decodeStatus(r);
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(status.message, r.details);
      const bad = find(details, BadRequestSchema);
      assert.deepEqual(
        bad.fieldViolations.map((v) => [v.field, v.description]),
        [["page_size", "must be between 1 and 1000, got 5000"]],
      );
    });

    test("NOT_FOUND carries ResourceInfo with the type and id", async () => {
      const id = "0123456789abcdef01234567";
      const body = Buffer.from(toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId: id })));
      const r = await rawUnary(account, "/conveer.AccountService/GetAccount", body);
      assert.equal(r.code, grpc.status.NOT_FOUND, r.details);
      assert.equal(r.details, `account "${id}" not found`);
      const info = find(decodeStatus(r).details, ResourceInfoSchema);
      assert.deepEqual([info.resourceType, info.resourceName], ["account", id]);
      // A Connect client (the project's own, speaking gRPC) finds the same detail.
      await assert.rejects(sys.accounts.getAccount({ accountId: id }), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.findDetails(ResourceInfoSchema)[0]?.resourceName, id);
        return true;
      });
    });

    test("RESOURCE_EXHAUSTED with no free proxy carries ErrorInfo NO_FREE_PROXY in domain conveer, for grpc-js and Connect clients", async () => {
      const acc = await sys.accounts.createAccount({ platform: "vk", login: "details", password: "pw" });
      const body = Buffer.from(toBinary(AllocateProxyRequestSchema, create(AllocateProxyRequestSchema, { accountId: acc.id, platform: "vk" })));
      const r = await rawUnary(proxy, "/conveer.ProxyService/AllocateProxy", body);
      assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED, r.details);
      assert.match(r.details, /no free healthy proxy in the pool; add proxies/);
      const info = find(decodeStatus(r).details, ErrorInfoSchema);
      assert.deepEqual([info.reason, info.domain], ["NO_FREE_PROXY", "conveer"]);
      await assert.rejects(sys.proxies.allocateProxy({ accountId: acc.id, platform: "vk" }), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.findDetails(ErrorInfoSchema)[0]?.reason, "NO_FREE_PROXY");
        return true;
      });
    });

    test("an error without details sends no grpc-status-details-bin", async () => {
      const r = await rawUnary(account, "/conveer.AccountService/GetAccount", Buffer.from([0xff, 0xff]));
      assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
      assert.deepEqual(r.metadata?.get("grpc-status-details-bin") ?? [], []);
    });
  });
}

test("RetryInfo and ErrorInfo from AppError options; details past the size limit are left out, the status stays", () => {
  const s = toStatus(new AppError("RESOURCE_EXHAUSTED", "vk rate-limited this account; retry after 3 s", { reason: "RATE_LIMITED", metadata: { platform: "vk" }, retryAfterMs: 2500 }));
  const status = fromBinary(StatusSchema, statusDetailsBin(s)!);
  const details = status.details.map((a) => anyUnpack(a, registry));
  const retry = find(details, RetryInfoSchema);
  assert.deepEqual([retry.retryDelay?.seconds, retry.retryDelay?.nanos], [2n, 500_000_000]);
  assert.deepEqual(find(details, ErrorInfoSchema).metadata, { platform: "vk" });
  const huge = toStatus(new AppError("INTERNAL", "x", { reason: "STORE_UNAVAILABLE", metadata: { big: "y".repeat(10_000) } }));
  assert.equal(statusDetailsBin(huge), undefined);
});
