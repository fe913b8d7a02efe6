import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { pino } from "pino";
import { OPEN_PRINCIPAL } from "../auth/tokens.ts";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { grants } from "../auth/scopes.ts";
import { AppError } from "../errors.ts";
import { SMSService, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { remoteClient } from "../server/clients.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../server/grpc-server.ts";
import { createMetrics } from "../server/metrics.ts";
import { createIdGenerator } from "../store/ids.ts";
import { freshStore } from "../../test/support/store.ts";
import { FakeSmsProvider } from "./fake-sms-provider.ts";
import { createSms } from "./sms.ts";
import type { Sms } from "./sms.ts";
import { smsService } from "./sms-service.ts";
import { rejectsWith } from "../../test/support/grpc.ts";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });


describe("SMSService over gRPC", () => {
  let store: Awaited<ReturnType<typeof freshStore>>;
  let sms: Sms;
  let fake: FakeSmsProvider;
  let server: grpc.Server;
  let client: Client<typeof SMSService>;
  let reader: Client<typeof SMSService>;
  const sessions: Http2SessionManager[] = [];
  const shutdown = new AbortController();

  before(async () => {
    store = await freshStore("pglite");
    fake = new FakeSmsProvider({ balance: 100, price: 10, numbers: 5 });
    sms = createSms({ db: store.db, providers: [fake], newId: createIdGenerator(), log });
    await sms.start();
    // Open mode for calls without a token; "Bearer reader" holds sms:read only.
    const readerPrincipal: Principal = { name: "reader", scopes: new Set(["sms:read"]), open: false };
    const auth: Authenticator = {
      authenticate: async (h) => (h === "Bearer reader" ? readerPrincipal : OPEN_PRINCIPAL),
      authorize: (p, scope, method) => {
        if (!grants(p.scopes, scope)) throw new AppError("PERMISSION_DENIED", `${method} needs scope ${scope}`);
      },
      isOpen: async () => true,
    };
    server = new grpc.Server(GRPC_SERVER_OPTIONS);
    const { definition, handlers } = grpcServiceOf(smsService(sms), { log, auth, metrics: createMetrics(), shutdown: shutdown.signal });
    server.addService(definition, handlers);
    const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    client = remoteClient(SMSService, { addr: `127.0.0.1:${port}`, sessions });
    reader = remoteClient(SMSService, { addr: `127.0.0.1:${port}`, token: "reader", sessions });
  });
  after(async () => {
    for (const s of sessions) s.abort();
    server.forceShutdown();
    shutdown.abort();
    await sms.stop();
    await store.drop();
  });

  test("GetNumber, GetCode woken by the provider's code, GetBalance, CancelActivation", async () => {
    const a = await client.getNumber({ service: "telegram" });
    assert.deepEqual([a.service, a.country, a.status], ["telegram", "ru", SMSStatus.SMS_STATUS_WAITING_CODE]);
    assert.ok(a.expiresAt);
    const bal = await reader.getBalance({});
    assert.deepEqual([bal.balance, bal.currency, bal.provider], [90, "RUB", "fake"]);
    const waiting = client.getCode({ activationId: a.id, timeoutSeconds: 30 });
    while (sms.stats().waiters === 0) await sleep(5);
    fake.deliver(fake.refOf(a.phone)!, "246810");
    assert.deepEqual(await waiting.then((r) => [r.success, r.code]), [true, "246810"]);

    const b = await client.getNumber({ service: "vk", country: "kz" });
    const c = await client.cancelActivation({ activationId: b.id });
    assert.deepEqual([c.success, c.refunded], [true, true]);
    assert.equal((await client.getCode({ activationId: b.id, timeoutSeconds: 1 })).error, "activation was cancelled");
  });

  test("the caller's deadline bounds GetCode: a success=false answer arrives before it", async () => {
    const a = await client.getNumber({ service: "mail" });
    const t0 = performance.now();
    const r = await client.getCode({ activationId: a.id }, { timeoutMs: 800 });
    const took = performance.now() - t0;
    assert.equal(r.success, false);
    assert.match(r.error, /timed out at the call's deadline/);
    assert.ok(took < 800, `answered after ${took} ms`);
  });

  test("a client that gives up frees its waiter at once", async () => {
    const a = await client.getNumber({ service: "max" });
    const ac = new AbortController();
    const waiting = client.getCode({ activationId: a.id, timeoutSeconds: 120 }, { signal: ac.signal });
    while (sms.stats().waiters === 0) await sleep(5);
    ac.abort();
    await rejectsWith(waiting, Code.Canceled);
    const t0 = performance.now();
    while (sms.stats().waiters > 0) {
      assert.ok(performance.now() - t0 < 1000, "the server still holds the waiter");
      await sleep(5);
    }
  });

  test("errors become status codes naming the field; scopes are enforced", async () => {
    await rejectsWith(client.getNumber({ service: "icq" }), Code.InvalidArgument, /^service must be one of/);
    await rejectsWith(client.getCode({ activationId: "x" }), Code.InvalidArgument, /activation_id/);
    await rejectsWith(client.getCode({ activationId: "0123456789abcdef01234567", timeoutSeconds: 1000 }), Code.InvalidArgument, /timeout_seconds/);
    await rejectsWith(client.cancelActivation({ activationId: "0123456789abcdef01234567" }), Code.NotFound);
    await rejectsWith(client.getBalance({ provider: "other" }), Code.InvalidArgument, /provider/);
    await rejectsWith(reader.getNumber({ service: "vk" }), Code.PermissionDenied, /sms:write/);
    await rejectsWith(reader.getCode({ activationId: "0123456789abcdef01234567" }), Code.PermissionDenied, /sms:write/);
    // Five numbers in the pool: the earlier tests took four (one came back on cancel); drain the rest.
    let exhausted = false;
    for (let i = 0; i < 10 && !exhausted; i++) {
      try {
        await client.getNumber({ service: "vk" });
      } catch (err) {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.ResourceExhausted, err.rawMessage);
        exhausted = true;
      }
    }
    assert.ok(exhausted, "the pool ran out");
  });
});
