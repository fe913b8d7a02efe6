import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { WarmingService, WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import type { WarmingEvent } from "../gen/conveer/v1/warming_pb.js";
import { createAccounts } from "../accounts/accounts.ts";
import type { Accounts } from "../accounts/accounts.ts";
import { createAuthenticator } from "../auth/tokens.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../server/grpc-server.ts";
import { remoteClient } from "../server/clients.ts";
import { createMetrics } from "../server/metrics.ts";
import { createIdGenerator } from "../store/ids.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { freshStore } from "../../test/support/store.ts";
import { fakeClock } from "./clock.ts";
import { fakePlatform } from "./fake-peers.ts";
import { localAccountsPeer } from "./peers.ts";
import { builtinScenarios } from "./scenario.ts";
import { createWarming } from "./warming.ts";
import type { Warming } from "./warming.ts";
import { warmingService } from "./warming-service.ts";

/** WarmingService over real gRPC (grpc-js server, Connect client): codes, streaming, cancellation. */

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
let store: Awaited<ReturnType<typeof freshStore>>;
let vault: Vault;
let accounts: Accounts;
let warming: Warming;
let server: grpc.Server;
let client: Client<typeof WarmingService>;
const sessions: Http2SessionManager[] = [];
const shutdown = new AbortController();
const clock = fakeClock(new Date("2025-03-10T06:00:00Z"));

before(async () => {
  store = await freshStore("pglite");
  const newId = createIdGenerator();
  vault = await createVault(store.db, Buffer.alloc(32, 9), newId);
  accounts = createAccounts({ db: store.db, vault, newId });
  warming = createWarming({ db: store.db, peers: { accounts: localAccountsPeer(accounts), platforms: fakePlatform().peer }, clock, newId, log, scenarios: builtinScenarios(), options: { idleRecheckMs: 50 } });
  await warming.start();
  server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const { definition, handlers } = grpcServiceOf(warmingService(warming), { log, auth: createAuthenticator({ db: store.db, mode: "auto" }), metrics: createMetrics(), shutdown: shutdown.signal });
  server.addService(definition, handlers);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  client = remoteClient(WarmingService, { addr: `127.0.0.1:${port}`, sessions });
});

after(async () => {
  for (const s of sessions) s.abort();
  shutdown.abort();
  server.forceShutdown();
  await warming.stop(500);
  await vault.stop();
  await store.drop();
});

async function rejectsWith(p: Promise<unknown>, code: Code, mentions?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    if (mentions) assert.match(err.rawMessage, mentions);
    return true;
  });
}

test("the RPCs answer with the domain's codes", async () => {
  const acc = await accounts.create(create(CreateAccountRequestSchema, { platform: "vk", login: "svc", password: "pw" }), "t");
  await rejectsWith(client.startWarming({ accountId: "0123456789abcdef01234567" }), Code.NotFound, /account/);
  await rejectsWith(client.startWarming({ accountId: acc.id, scenarioId: "nope" }), Code.NotFound, /scenario/);
  const task = await client.startWarming({ accountId: acc.id, scenarioId: "gentle" });
  assert.equal(task.status, WarmingStatus.RUNNING);
  await rejectsWith(client.startWarming({ accountId: acc.id }), Code.AlreadyExists);
  assert.equal((await client.pauseWarming({ taskId: task.id })).status, WarmingStatus.PAUSED);
  assert.equal((await client.resumeWarming({ taskId: task.id })).status, WarmingStatus.RUNNING);
  assert.equal((await client.getWarmingStatus({ taskId: task.id })).totalDays, 7);
  const stats = await client.getStatistics({});
  assert.equal(stats.tasksByStatus.WARMING_STATUS_RUNNING, 1n);
  await rejectsWith(client.getStatistics({ platform: "nope" }), Code.InvalidArgument, /platform/);
  const list = await client.listScenarios({});
  assert.deepEqual(
    list.scenarios.map((s) => s.id),
    ["basic", "gentle", "intensive"],
  );
  assert.equal((await client.getScenario({})).id, "basic");
  assert.equal((await client.stopWarming({ taskId: task.id, reason: "done testing" })).status, WarmingStatus.STOPPED);
  await rejectsWith(client.resumeWarming({ taskId: task.id }), Code.FailedPrecondition);
});

test("StreamEvents streams live and resumed events; cancelling the call ends the server side", async () => {
  const acc = await accounts.create(create(CreateAccountRequestSchema, { platform: "vk", login: "svc2", password: "pw" }), "t");
  const ac = new AbortController();
  const got: WarmingEvent[] = [];
  const reading = (async () => {
    try {
      for await (const e of client.streamEvents({}, { signal: ac.signal })) got.push(e);
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
    }
  })();
  await sleep(100);
  assert.equal(warming.hub.subscriberCount(), 1);
  const task = await client.startWarming({ accountId: acc.id, scenarioId: "gentle" });
  await clock.advance(86_400_000);
  await warming.settled();
  const until = Date.now() + 5000;
  while (!got.some((e) => e.eventType === "action_completed") && Date.now() < until) await sleep(10);
  assert.equal(got[0].eventType, "status_changed");
  assert.equal(got[0].taskId, task.id);
  assert.equal(got[0].data.to, "WARMING_STATUS_RUNNING");
  assert.ok(got.some((e) => e.eventType === "action_completed"));
  ac.abort();
  await reading;
  const end = Date.now() + 2000;
  while (warming.hub.subscriberCount() > 0 && Date.now() < end) await sleep(10);
  assert.equal(warming.hub.subscriberCount(), 0, "the cancelled stream let go of its subscription");

  // Resume after the first event: the rest, from the store, in order.
  await warming.settled();
  const stored = (await store.db.query<{ id: number }>("SELECT id FROM warming_events WHERE task_id = $1 AND id > $2 ORDER BY id", [task.id, Number(got[0].eventId)])).rows.map((r) => String(r.id));
  const ac2 = new AbortController();
  const again: WarmingEvent[] = [];
  const r2 = (async () => {
    try {
      for await (const e of client.streamEvents({ taskId: task.id, afterEventId: got[0].eventId }, { signal: ac2.signal })) again.push(e);
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
    }
  })();
  const u2 = Date.now() + 5000;
  while (again.length < stored.length && Date.now() < u2) await sleep(10);
  ac2.abort();
  await r2;
  assert.deepEqual(
    again.map((e) => e.eventId),
    stored,
  );
  assert.deepEqual(
    again.slice(0, got.length - 1).map((e) => e.eventId),
    got.slice(1).map((e) => e.eventId),
    "what the first stream saw, then more",
  );
  await rejectsWith(
    (async () => {
      for await (const _ of client.streamEvents({ afterEventId: "x" })) void _;
    })(),
    Code.InvalidArgument,
    /after_event_id/,
  );
});
