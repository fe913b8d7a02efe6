import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { AccountService } from "../gen/conveer/v1/account_pb.js";
import { OPEN_PRINCIPAL } from "../auth/tokens.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { AppError } from "../errors.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "./grpc-server.ts";
import { createMetrics } from "./metrics.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { MAX_STATUS_MESSAGE_BYTES, capMessage, toStatus } from "./status.ts";
import { codeName, rawClient, rawUnary } from "../../test/support/grpc.ts";

test("capMessage keeps a message up to the cap and cuts a longer one on a character boundary, saying so", () => {
  const fits = "a".repeat(MAX_STATUS_MESSAGE_BYTES);
  assert.equal(capMessage(fits), fits);
  const cut = capMessage("b".repeat(MAX_STATUS_MESSAGE_BYTES + 1));
  assert.ok(Buffer.byteLength(cut) <= MAX_STATUS_MESSAGE_BYTES);
  assert.match(cut, /^b+… \(message truncated\)$/);
  const cyrillic = capMessage("ж".repeat(10_000)); // 2 bytes each
  assert.ok(Buffer.byteLength(cyrillic) <= MAX_STATUS_MESSAGE_BYTES);
  assert.match(cyrillic, /^ж+… \(message truncated\)$/);
  assert.equal(toStatus(new AppError("NOT_FOUND", "x".repeat(5000))).message, capMessage("x".repeat(5000)));
});

// A handler whose error message is huge (a bug elsewhere, or a peer's long answer): the client must
// still get the error's code with a bounded message, never RST_STREAM (INTERNAL "Protocol error").
let server: grpc.Server;
let client: grpc.Client;
before(async () => {
  const auth: Authenticator = { authenticate: async () => OPEN_PRINCIPAL, authorize: () => {}, isOpen: async () => true };
  const binding = {
    service: AccountService,
    scopes: Object.fromEntries(AccountService.methods.map((m) => [m.localName, "accounts:read"])),
    impl: {
      getAccount: () => {
        throw new AppError("FAILED_PRECONDITION", `huge: ${"x".repeat(1024 * 1024)}`);
      },
      listAccounts: () => {
        throw new AppError("NOT_FOUND", `огромное: ${"ж".repeat(100_000)}`);
      },
    },
  } as unknown as ServiceBinding;
  server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const { definition, handlers } = grpcServiceOf(binding, { log: pino({ level: "silent" }), auth, metrics: createMetrics(), shutdown: new AbortController().signal });
  server.addService(definition, handlers);
  const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  client = rawClient(`127.0.0.1:${port}`);
});
after(async () => {
  client.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
});

test("an error with a 1 MB message reaches a gRPC client with its code and a capped message", async () => {
  const r = await rawUnary(client, "/conveer.AccountService/GetAccount", Buffer.alloc(0));
  assert.equal(codeName(r.code), "FAILED_PRECONDITION", r.details.slice(0, 200));
  assert.ok(Buffer.byteLength(r.details) <= MAX_STATUS_MESSAGE_BYTES, `${Buffer.byteLength(r.details)} bytes`);
  assert.match(r.details, /^huge: x+… \(message truncated\)$/);
  const c = await rawUnary(client, "/conveer.AccountService/ListAccounts", Buffer.alloc(0));
  assert.equal(codeName(c.code), "NOT_FOUND", c.details.slice(0, 200));
  assert.match(c.details, /^огромное: ж+… \(message truncated\)$/);
});

test("store failures are retryable statuses that name no database detail; a damaged page is DATA_LOSS", () => {
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
  // A server out of connection slots (seen when replicas and tests share one PostgreSQL) was INTERNAL.
  const full = toStatus(pgError("53300", "sorry, too many clients already"));
  assert.deepEqual([full.code, full.internal], [grpc.status.UNAVAILABLE, false]);
  const refused = toStatus(pgError("ECONNREFUSED", "connect ECONNREFUSED 10.1.2.3:5432"));
  assert.equal(refused.code, grpc.status.UNAVAILABLE);
  assert.doesNotMatch(refused.message, /10\.1\.2\.3|5432/);
  assert.equal(toStatus(pgError("XX001", "invalid page in block 1 of relation base/5/16384")).code, grpc.status.DATA_LOSS);
});

test("a peer's UNAVAILABLE keeps its ErrorInfo and RetryInfo (whose outage, when to retry); a peer's INTERNAL becomes UNAVAILABLE without them", () => {
  const storeDown = new ConnectError("the store is unreachable (connection reset); retry later", Code.Unavailable);
  storeDown.details = [...new AppError("UNAVAILABLE", "x", { reason: "STORE_UNAVAILABLE", retryAfterMs: 1000 }).details];
  const s = toStatus(storeDown);
  assert.equal(s.code, grpc.status.UNAVAILABLE);
  assert.match(s.message, /^a peer service could not answer \(Unavailable: the store is unreachable/);
  assert.equal(s.details?.length, 2);
  const bug = new ConnectError("internal error", Code.Internal);
  bug.details = storeDown.details;
  const b = toStatus(bug);
  assert.deepEqual([b.code, b.details], [grpc.status.UNAVAILABLE, undefined]);
});
