/**
 * Registrations per second through the whole conveyor (sandbox at zero latency, codes sent at
 * once), ExecuteAction throughput, and warming end to end (the worker runs every action through
 * the VK service, the account's proxy and the sandbox), beside the bare grpc-js server measured
 * with the same client in the same run. Each figure is the median of BENCH_ROUNDS rounds, the
 * rounds interleaved (bare, Register, ExecuteAction, warming, then again), with the CPU each
 * operation cost (this process, which holds the whole system, the sandbox and the proxy; plus
 * the PostgreSQL backends on PostgreSQL) and the store statements it ran.
 * Run: node bench/platforms.ts
 * Knobs (env): BENCH_STORE=pglite|postgres (default postgres when CONVEER_TEST_DATABASE_URL is
 * set)  BENCH_ROUNDS=3  BENCH_REGISTRATIONS=200 (per round)  BENCH_DURATION_MS=5000
 * BENCH_WARMING_ACTIONS=20 (per task)  BENCH_WARMING_CONCURRENCY=256 (the worker's actions in flight)
 * BENCH_CPU_PROF_DIR=/tmp/prof (a CPU profile of this process during each round's Register window:
 * `node bench/profile-summary.ts /tmp/prof/register-round1.cpuprofile`)
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import { ActionType } from "../src/gen/conveer/v1/platform_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { startHttpConnectProxy } from "../test/support/local-proxies.ts";
import { startTestSystem } from "../test/support/system.ts";
import { startBareServer } from "./bare-server.ts";
import { snapshot } from "./cpu.ts";
import { PROFILE_DIR, startProfile, stopProfile } from "./profile.ts";
import type { CpuSnapshot } from "./cpu.ts";
import { envInt, fmt, median, table } from "./stats.ts";

const REGISTRATIONS = envInt("BENCH_REGISTRATIONS", 200);
const DURATION_MS = envInt("BENCH_DURATION_MS", 5000);
const WARMING_ACTIONS = envInt("BENCH_WARMING_ACTIONS", 20);
const WARMING_CONCURRENCY = envInt("BENCH_WARMING_CONCURRENCY", 256);
const ROUNDS = envInt("BENCH_ROUNDS", 3);
const IN_FLIGHT = 64;
const kind = process.env.BENCH_STORE || (process.env.CONVEER_TEST_DATABASE_URL ? "postgres" : "pglite");
if (kind !== "pglite" && kind !== "postgres") throw new Error(`BENCH_STORE must be pglite or postgres, got ${JSON.stringify(kind)}`);

/** One measured figure of a round: operations per second, latency, CPU ms and store statements per operation. */
type Figure = { perSec: number; p50: number; p99: number; cpuMs: number; statements: number };

/** Runs `op` from `n` workers for `ms`; returns ops/s and latency percentiles. */
async function load(n: number, ms: number, op: () => Promise<unknown>): Promise<{ ops: number; perSec: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await op();
        lat.push(performance.now() - t);
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { ops: lat.length, perSec: (lat.length / ms) * 1000, p50: lat[Math.floor(lat.length / 2)] ?? 0, p99: lat[Math.floor(lat.length * 0.99)] ?? 0 };
}

const bare = await startBareServer();
const bareClient = remoteClient(AccountService, { addr: `127.0.0.1:${bare.port}` });

// Warming: a scenario day per real second, one day of WARMING_ACTIONS actions over the whole day,
// so a task's actions are all due within a second of its start.
const scenarios = await mkdtemp(join(tmpdir(), "conveer-bench-scenarios-"));
await writeFile(join(scenarios, "burst.json"), JSON.stringify({ id: "burst", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: WARMING_ACTIONS } }] }));
const sys = await startTestSystem(kind, {
  env: {
    CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000", CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_LOG_LEVEL: "silent", CONVEER_TIME_SCALE: "86400",
    CONVEER_SCENARIOS_DIR: scenarios, CONVEER_WARMING_CONCURRENCY: String(WARMING_CONCURRENCY),
  },
});
const proxy = await startHttpConnectProxy();
const metrics = async () => (await fetch(`http://127.0.0.1:${sys.app.httpPort}/metrics`)).text();
/** Store statements run so far (every operation of the store histogram). */
const statements = (text: string) => [...text.matchAll(/^conveer_store_query_duration_seconds_count\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
const recorded = (text: string) => Number(/^conveer_warming_worker_actions_total\{state="recorded"\} (\d+)/m.exec(text)?.[1] ?? 0);
/** The PostgreSQL backends serving the system (none on PGlite), for their CPU. */
const backends = async () => (kind === "postgres" ? (await sys.db.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).rows.map((r) => r.pid) : []);
type Mark = { cpu: CpuSnapshot; statements: number; text: string };
const mark = async (): Promise<Mark> => {
  const text = await metrics();
  return { cpu: snapshot(await backends()), statements: statements(text), text };
};
/** CPU ms (this process and the backends seen at the start) and statements per operation between two marks. */
function perOp(a: Mark, b: Mark, ops: number): { cpuMs: number; statements: number } {
  const selfMs = (b.cpu.self.user - a.cpu.self.user + b.cpu.self.system - a.cpu.self.system) / 1000;
  let ticks = 0;
  for (const [pid, t0] of a.cpu.pids) ticks += (b.cpu.pids.get(pid) ?? t0) - t0;
  return { cpuMs: (selfMs + ticks * 10) / ops, statements: (b.statements - a.statements) / ops };
}

async function register(vk: ReturnType<typeof remoteClient<typeof VKService>>, round: number): Promise<{ ids: string[]; figure: Figure }> {
  let next = 0;
  const ids: string[] = [];
  const m0 = await mark();
  const profiling = PROFILE_DIR ? await startProfile() : undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next++ < REGISTRATIONS) {
        const r = await vk.register({ country: ["ru", "kz", "by"][next % 3] });
        if (!r.success) throw new Error(`registration failed at ${r.failedStep}: ${r.error}`);
        ids.push(r.accountId);
      }
    }),
  );
  const perSec = (ids.length / (performance.now() - t0)) * 1000;
  const m1 = await mark();
  if (profiling) console.error(`profile: ${await stopProfile(profiling, `register-round${round + 1}`)}`);
  return { ids, figure: { perSec, p50: Number.NaN, p99: Number.NaN, ...perOp(m0, m1, ids.length) } };
}

/** Warming end to end: a task per account, every action due at once; actions per second until all are done. */
async function warm(ids: string[]): Promise<{ actions: number; figure: Figure }> {
  const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
  const m0 = await mark();
  const w0 = performance.now();
  const tasks = await Promise.all(ids.map((accountId) => warming.startWarming({ accountId, scenarioId: "burst" })));
  // Waits on the worker's counter (one scrape) until every action is recorded or none was for a
  // while, so the waiting adds no load of its own; then reads the tasks' states once to confirm.
  const expected = recorded(m0.text) + ids.length * WARMING_ACTIONS;
  let last = -1;
  let quietSince = performance.now();
  for (;;) {
    const n = recorded(await metrics());
    if (n >= expected) break;
    if (n !== last) [last, quietSince] = [n, performance.now()];
    else if (performance.now() - quietSince > 10_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const ms = performance.now() - w0;
  for (;;) {
    const states = await Promise.all(tasks.map((t) => warming.getWarmingStatus({ taskId: t.id })));
    if (states.every((t) => t.status !== WarmingStatus.RUNNING)) {
      const failed = states.filter((t) => t.status !== WarmingStatus.COMPLETED || t.actionsFailed > 0);
      if (failed.length > 0) throw new Error(`${failed.length} warming tasks did not complete cleanly, e.g. ${failed[0].error}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const m1 = await mark();
  const actions = recorded(m1.text) - recorded(m0.text);
  return { actions, figure: { perSec: (actions / ms) * 1000, p50: Number.NaN, p99: Number.NaN, ...perOp(m0, m1, actions) } };
}

const rounds: Record<"bare" | "register" | "execute" | "warming", Figure[]> = { bare: [], register: [], execute: [], warming: [] };
let totals = { registrations: 0, tasks: 0, actions: 0 };
try {
  await fetch(`${sys.app.sandboxUrl}/v1/admin/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ codeDelayMs: 0, latency: { minMs: 0, maxMs: 0 } }) });
  await fetch(`${sys.app.sandboxUrl}/v1/admin/rate-limit`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ burst: 1e9, perSecond: 1e9 }) });
  await fetch(`${sys.app.sandboxUrl}/v1/sms/admin/top-up`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ amount: REGISTRATIONS * ROUNDS * 20 }) });
  await sys.proxies.addProxies({ proxies: [{ url: `http://127.0.0.1:${proxy.port}`, capacity: 10_000 }] });
  const vk = remoteClient(VKService, { addr: sys.addr("vk") });
  for (let round = 0; round < ROUNDS; round++) {
    const b0 = snapshot();
    const b = await load(IN_FLIGHT, DURATION_MS, () => bareClient.getAccount({ accountId: "0123456789abcdef01234567" }));
    const b1 = snapshot();
    rounds.bare.push({ ...b, cpuMs: (b1.self.user - b0.self.user + b1.self.system - b0.self.system) / 1000 / b.ops, statements: 0 });

    const { ids, figure } = await register(vk, round);
    rounds.register.push(figure);

    let i = 0;
    const m0 = await mark();
    const x = await load(IN_FLIGHT, DURATION_MS, () => vk.executeAction({ accountId: ids[i++ % ids.length], actionType: ActionType.VIEW_PROFILE }));
    rounds.execute.push({ ...x, ...perOp(m0, await mark(), x.ops) });

    const w = await warm(ids);
    rounds.warming.push(w.figure);
    totals = { registrations: totals.registrations + ids.length, tasks: totals.tasks + ids.length, actions: totals.actions + w.actions };
  }

  const med = (rs: Figure[], k: keyof Figure) => median(rs.map((r) => r[k]));
  const base = med(rounds.bare, "perSec");
  const row = (name: string, rs: Figure[]) => [
    name, fmt(med(rs, "perSec"), med(rs, "perSec") < 10 ? 2 : 0), fmt(med(rs, "p50"), 2), fmt(med(rs, "p99"), 1),
    fmt(med(rs, "cpuMs"), 2), fmt(med(rs, "statements"), 1), `${((med(rs, "perSec") / base) * 100).toFixed(rs === rounds.register ? 2 : 1)}%`,
  ];
  console.log(`\nplatform benchmark on ${kind}, ${availableParallelism()} cores, node ${process.version}; medians of ${ROUNDS} interleaved rounds; ${IN_FLIGHT} in flight for throughput, 16 registrations in flight, the warming worker ${WARMING_CONCURRENCY} actions in flight`);
  console.log(`CPU ms per operation: this process (the whole system, the sandbox, the proxy)${kind === "postgres" ? " + the PostgreSQL backends" : ""}\n`);
  console.log(table([
    ["scenario", "per s", "p50 ms", "p99 ms", "CPU ms/op", "statements/op", "ratio to bare"],
    row("bare grpc-js GetAccount (baseline)", rounds.bare),
    row("Register (whole conveyor)", rounds.register),
    row("ExecuteAction VIEW_PROFILE", rounds.execute),
    row("Warming, worker → VK → proxy → sandbox", rounds.warming),
  ]));
  console.log(`(per round: ${rounds.register.map((r) => fmt(r.perSec)).join(", ")} registrations/s; ${rounds.warming.map((r) => fmt(r.perSec)).join(", ")} warming actions/s)`);
  console.log(`(${totals.registrations} registrations; ${totals.tasks} warming tasks, ${totals.actions} actions; requests through the proxy: ${proxy.requests}, tunnels opened: ${proxy.connections})`);
} finally {
  await proxy.close();
  await sys.stop();
  await bare.stop();
  await rm(scenarios, { recursive: true, force: true });
}
