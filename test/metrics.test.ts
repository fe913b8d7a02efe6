/**
 * /metrics of a real running system, metric by metric: each changes when what it counts happens
 * (a failed Register counts under its step, a pool change moves the proxy gauges, a warming task's
 * actions count and its end writes one log line), and the trigger-kept counts behind the store
 * gauges stay equal to a count(*) over the rows, whatever the statements.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { SMSService } from "../src/gen/conveer/v1/sms_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import type { Db } from "../src/store/db.ts";
import { STORE_KINDS } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { startEchoTarget, startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";
import { eventually } from "./support/grpc.ts";
import { metricFamilies, scrape, valueOf } from "./support/metrics.ts";

/** One day of two actions: a task ends within seconds at CONVEER_TIME_SCALE 86400. */
const SCENARIO = { id: "metrics", name: "Metrics test", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2 } }] };

/** The trigger-kept counts must equal a count over the rows. */
async function assertCountsTrue(db: Db): Promise<void> {
  const kept = await db.query<{ healthy: boolean; n: number; capacity: number; allocated: number }>("SELECT healthy, sum(n)::int AS n, sum(capacity)::int AS capacity, sum(allocated)::int AS allocated FROM proxy_counts GROUP BY healthy HAVING sum(n) <> 0 ORDER BY healthy");
  const real = await db.query<{ healthy: boolean; n: number; capacity: number; allocated: number }>(
    "SELECT healthy, count(*)::int AS n, sum(capacity)::int AS capacity, sum(allocated)::int AS allocated FROM proxies GROUP BY healthy ORDER BY healthy",
  );
  assert.deepEqual(kept.rows.map((r) => ({ ...r, n: Number(r.n), capacity: Number(r.capacity), allocated: Number(r.allocated) })), real.rows);
  const tasks = await db.query<{ status: number; n: number }>("SELECT status, n FROM warming_task_counts WHERE n <> 0 ORDER BY status");
  const realTasks = await db.query<{ status: number; n: number }>("SELECT status, count(*)::int AS n FROM warming_tasks GROUP BY status ORDER BY status");
  assert.deepEqual(tasks.rows.map((r) => ({ status: r.status, n: Number(r.n) })), realTasks.rows);
}

for (const kind of STORE_KINDS) {
  describe(`/metrics of a running system on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    let dir: string;
    const proxies: LocalProxy[] = [];
    const sessions: Http2SessionManager[] = [];
    const lines: Record<string, unknown>[] = [];
    let vk: Client<typeof VKService>;
    let warming: Client<typeof WarmingService>;
    let sms: Client<typeof SMSService>;
    const metrics = async () => (await scrape(sys.app.httpPort)).samples;

    before(async () => {
      echo = await startEchoTarget();
      dir = await mkdtemp(join(tmpdir(), "conveer-metrics-"));
      await writeFile(join(dir, "metrics.json"), JSON.stringify(SCENARIO));
      const log = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
      sys = await startTestSystem(kind, {
        backgroundChecks: false,
        log,
        env: {
          CONVEER_REGISTRATION_CODE_TIMEOUT_S: "2",
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
          CONVEER_SCENARIOS_DIR: dir,
          CONVEER_TIME_SCALE: "86400",
        },
      });
      vk = remoteClient(VKService, { addr: sys.addr("vk"), sessions });
      warming = remoteClient(WarmingService, { addr: sys.addr("warming"), sessions });
      sms = remoteClient(SMSService, { addr: sys.addr("sms"), sessions });
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await sys?.stop();
      await Promise.all(proxies.map((p) => p.close()));
      await echo?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test("the issue's metrics are declared with their types; counters end in _total", async () => {
      const families = metricFamilies((await scrape(sys.app.httpPort)).text);
      const want: Record<string, string> = {
        conveer_accounts: "gauge",
        conveer_proxies: "gauge",
        conveer_proxy_slots: "gauge",
        conveer_sms_balance: "gauge",
        conveer_sms_activations_total: "counter",
        conveer_registrations_total: "counter",
        conveer_warming_actions_total: "counter",
        conveer_warming_tasks: "gauge",
        conveer_warming_due_actions: "gauge",
        conveer_warming_lag_seconds: "histogram",
        conveer_event_subscribers: "gauge",
        conveer_store_up: "gauge",
        conveer_store_query_duration_seconds: "histogram",
        conveer_grpc_calls_total: "counter",
        conveer_grpc_call_duration_seconds: "histogram",
        conveer_warming_worker_actions_total: "counter",
        conveer_warming_worker_in_flight: "gauge",
      };
      for (const [name, type] of Object.entries(want)) assert.equal(families.get(name), type, name);
      for (const [name, type] of families) {
        if (!name.startsWith("conveer_")) continue;
        assert.equal(type === "counter", name.endsWith("_total"), `${name} is a ${type}`);
      }
      assert.equal(families.has("conveer_warming_worker_actions"), false, "the old gauge of cumulative counts is gone");
      // The docs name only metrics there are (docs/operations.md named the old gauge and "store pool gauges").
      for (const doc of ["README.md", "docs/operations.md", "deploy/README.md", "src/warming/README.md"]) {
        const text = await readFile(new URL(`../${doc}`, import.meta.url), "utf8");
        const named = new Set([...text.matchAll(/\bconveer_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, "")));
        assert.deepEqual([...named].filter((n) => !families.has(n)), [], `${doc} names metrics /metrics does not have`);
      }
    });

    test("conveer_store_up is 1 and store queries are timed by a short operation name", async () => {
      const s = await metrics();
      assert.equal(valueOf(s, "conveer_store_up"), 1);
      assert.ok((valueOf(s, "conveer_store_query_duration_seconds_count", { operation: "select account_counts" }) ?? 0) >= 1);
      const ops = new Set(s.filter((x) => x.name === "conveer_store_query_duration_seconds_count").map((x) => x.labels.operation));
      for (const op of ops) assert.match(op, /^[a-z_]+( [a-z_.]+)?$/, op);
      assert.ok(ops.size < 80, `${ops.size} operations`);
    });

    test("a failed Register counts under its step; a successful one as succeeded", async () => {
      // No proxy in the pool: the conveyor stops at allocate_proxy.
      const failed = await vk.register({ login: `nopool_${kind}` }, { timeoutMs: 30_000 });
      assert.equal(failed.success, false);
      assert.equal(failed.failedStep, "allocate_proxy");
      let s = await metrics();
      assert.equal(valueOf(s, "conveer_registrations_total", { platform: "vk", outcome: "failed", step: "allocate_proxy" }), 1);
      assert.equal(valueOf(s, "conveer_registrations_total", { outcome: "succeeded" }), undefined);
      const line = lines.find((l) => l.msg === "registration failed");
      assert.equal(line?.step, "allocate_proxy");
      assert.match(String(line?.reason), /no free healthy proxy/);

      proxies.push(await startHttpConnectProxy(), await startHttpConnectProxy());
      const added = await sys.proxies.addProxies({ proxies: proxies.map((p) => ({ url: p.url, capacity: 2 })) });
      assert.equal(added.added, 2, JSON.stringify(added.results));
      s = await metrics();
      assert.equal(valueOf(s, "conveer_proxies", { state: "healthy" }), 2);
      assert.equal(valueOf(s, "conveer_proxy_slots", { state: "free" }), 4);

      const ok = await vk.register({ login: `reg_${kind}` }, { timeoutMs: 60_000 });
      assert.equal(ok.success, true, ok.error);
      s = await metrics();
      assert.equal(valueOf(s, "conveer_registrations_total", { platform: "vk", outcome: "succeeded", step: "" }), 1);
      assert.equal(valueOf(s, "conveer_proxy_slots", { state: "used" }), 1);
      assert.equal(valueOf(s, "conveer_proxy_slots", { state: "free" }), 3);
      assert.equal(valueOf(s, "conveer_accounts", { platform: "vk", status: "active" }), 1);
      assert.equal(valueOf(s, "conveer_accounts", { platform: "vk", status: "deleted" }), 1, "the failed registration's account is retired");
      // The conveyor rented a number, got its code and completed the activation.
      assert.equal(valueOf(s, "conveer_sms_activations_total", { outcome: "rented" }), 1);
      assert.equal(valueOf(s, "conveer_sms_activations_total", { outcome: "code_received" }), 1);
      assert.equal(valueOf(s, "conveer_sms_activations_total", { outcome: "completed" }), 1);
      const balance = await sms.getBalance({});
      assert.equal(balance.currency, "RUB");
      assert.equal(valueOf(s, "conveer_sms_balance", { provider: balance.provider }), balance.balance);
      await assertCountsTrue(sys.db);
    });

    test("the proxy gauges follow health, capacity and removal (trigger-kept counts equal count(*))", async () => {
      await sys.db.query("UPDATE proxies SET healthy = false WHERE allocated = 0");
      let s = await metrics();
      assert.deepEqual([valueOf(s, "conveer_proxies", { state: "healthy" }), valueOf(s, "conveer_proxies", { state: "unhealthy" })], [1, 1]);
      assert.deepEqual([valueOf(s, "conveer_proxy_slots", { state: "used" }), valueOf(s, "conveer_proxy_slots", { state: "free" })], [1, 1]);
      await assertCountsTrue(sys.db);
      // Several rows in one statement, moving both ways.
      await sys.db.query("UPDATE proxies SET healthy = NOT healthy, capacity = capacity + 1");
      await assertCountsTrue(sys.db);
      await sys.db.query("UPDATE proxies SET healthy = true, capacity = capacity - 1");
      await assertCountsTrue(sys.db);
      await sys.db.query("DELETE FROM proxies WHERE allocated = 0");
      s = await metrics();
      assert.equal(valueOf(s, "conveer_proxies", { state: "healthy" }), 1);
      assert.equal(valueOf(s, "conveer_proxies", { state: "unhealthy" }), 0);
      await assertCountsTrue(sys.db);
    });

    test("warming: tasks by status, actions and their lag counted, due actions, one log line per ended task", async () => {
      const registered = (await sys.accounts.listAccounts({ platform: "vk", status: AccountStatus.ACTIVE })).accounts[0];
      const stranger = await sys.accounts.createAccount({ platform: "vk", login: `stranger_${kind}`, password: "not-on-the-sandbox", status: AccountStatus.ACTIVE });
      const third = await sys.accounts.createAccount({ platform: "vk", login: `third_${kind}`, password: "x", status: AccountStatus.ACTIVE });
      const done = await warming.startWarming({ accountId: registered.id, scenarioId: "metrics" });
      // Not on the sandbox: its first action fails for good (the platform refuses it) and the task FAILs.
      const refused = await warming.startWarming({ accountId: stranger.id, scenarioId: "metrics" });
      const stopped = await warming.startWarming({ accountId: third.id, scenarioId: "metrics" });
      let s = await metrics();
      assert.ok((valueOf(s, "conveer_warming_tasks", { status: "running" }) ?? 0) >= 1);
      await warming.stopWarming({ taskId: stopped.id, reason: "metrics test stops it" });
      const ended = async (id: string) => (await warming.getWarmingStatus({ taskId: id })).status;
      await eventually(async () => (await ended(done.id)) === WarmingStatus.COMPLETED && (await ended(refused.id)) === WarmingStatus.FAILED, 30_000, "both tasks to end");
      await assertCountsTrue(sys.db);

      s = await metrics();
      assert.equal(valueOf(s, "conveer_warming_tasks", { status: "completed" }), 1);
      assert.equal(valueOf(s, "conveer_warming_tasks", { status: "failed" }), 1);
      assert.equal(valueOf(s, "conveer_warming_tasks", { status: "stopped" }), 1);
      assert.equal(valueOf(s, "conveer_warming_tasks", { status: "running" }), 0);
      assert.equal(valueOf(s, "conveer_warming_due_actions"), 0);
      assert.equal(valueOf(s, "conveer_warming_actions_total", { platform: "vk", type: "view_profile", outcome: "done" }), 2);
      assert.ok((valueOf(s, "conveer_warming_actions_total", { platform: "vk", outcome: "fatal" }) ?? 0) >= 1);
      assert.ok((valueOf(s, "conveer_warming_lag_seconds_count") ?? 0) >= 3);
      assert.equal(valueOf(s, "conveer_warming_worker_actions_total", { state: "claimed" }), valueOf(s, "conveer_warming_worker_actions_total", { state: "recorded" }));
      assert.equal(valueOf(s, "conveer_warming_worker_in_flight"), 0);

      const endLines = (id: string) => lines.filter((l) => l.msg === "warming task ended" && l.task_id === id);
      await eventually(async () => endLines(done.id).length === 1 && endLines(refused.id).length === 1, 5000, "the end lines");
      assert.deepEqual(
        [done.id, refused.id, stopped.id].map((id) => endLines(id).map((l) => [l.status, l.level, typeof l.reason === "string" && l.reason.length > 0])[0]),
        [
          ["COMPLETED", 30, false],
          ["FAILED", 40, true],
          ["STOPPED", 30, true],
        ],
      );
      assert.equal(endLines(stopped.id)[0].reason, "metrics test stops it");
      assert.ok([done.id, refused.id, stopped.id].every((id) => endLines(id).length === 1), "exactly one line per task");
    });

    test("conveer_event_subscribers counts the streams attached to this process", async () => {
      const ac = new AbortController();
      const stream = warming.streamEvents({}, { signal: ac.signal });
      const it = stream[Symbol.asyncIterator]();
      const first = it.next().catch(() => undefined);
      await eventually(async () => valueOf(await metrics(), "conveer_event_subscribers") === 1, 5000, "one subscriber");
      ac.abort();
      await first;
      await eventually(async () => valueOf(await metrics(), "conveer_event_subscribers") === 0, 5000, "none left");
    });
  });
}
