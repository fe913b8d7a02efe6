/**
 * `node bench/warming.ts`: the warming worker's sustained throughput and scheduling lag, against a
 * bare baseline on the same database in the same run.
 *
 * Setup, per store (PGlite on disk in a temporary directory; PostgreSQL when BENCH_DATABASE_URL or
 * CONVEER_TEST_DATABASE_URL is set: a new database, dropped after), migrated like production:
 * - N RUNNING tasks (bulk SQL, plans from the real planner over a one-day bench scenario of K
 *   actions per task), their accounts in a fake in-memory AccountService, and a fake zero-latency
 *   platform peer that notes when each action starts.
 * - The baseline: a table of the same N×K due times and a bare loop per connection that claims a
 *   batch (UPDATE … WHERE id IN (SELECT … ORDER BY run_at LIMIT b FOR UPDATE SKIP LOCKED)) and
 *   marks it done (a second UPDATE): the floor any SKIP LOCKED scheduler pays, with no work, no
 *   task rows, no events.
 *
 * Two modes, each run for the baseline and for warming (createWarming with its worker and event
 * hub, as a process runs it):
 * - paced: a scenario day compressed into BENCH_WARMING_SECONDS of real time (the clock's time
 *   scale), so actions fall due at N×K / seconds per second; reported: achieved actions/s and the
 *   scheduling lag (actual start − due, in real ms) p50/p99/max.
 * - saturated: every action already overdue; reported: sustained actions/s (the middle 80 % of
 *   the run) — the capacity.
 *
 * Saturated runs BENCH_WARMING_ROUNDS times (default 3), each round on a fresh backlog, interleaved
 * in a rotating order with the bare loop and, on PostgreSQL, graphile-worker 0.18 draining as many
 * no-op jobs in batches (bench/graphile-drain.ts: localQueue, batched completion) on the same
 * database, and graphile-worker + bookkeeping: the same drain settings, one job per planned action
 * of a copy of the round's tasks (schema gw_bench, tables shaped like warming's), each job's task
 * doing a warming action's bookkeeping in one statement through helpers.withPgClient (the action
 * row, the task row in place, action_started and action_completed event rows). Its jobs' completion
 * is a separate transaction from that bookkeeping (graphile-worker completes jobs in batches, after
 * the task), so it holds a weaker guarantee than warming's, whose outcome, events and queue row move
 * in one transaction: a crash between the two records an action twice. The no-op drain does no
 * bookkeeping at all (about 2 row writes per job against warming's 6.67); the issue's goal is stated
 * against it. Reported: the medians and the ratios warming / bare loop, warming / graphile-worker
 * and warming / graphile-worker + bookkeeping, and per action or job (bench/pg-cost.ts): the CPU of
 * this process and of the database's backends (their /proc entries: the server must run on this
 * host), statements, transactions and row writes.
 *
 * Two more runs, paced and saturated, over BENCH_WARMING_FANOUT_TASKS tasks (default a tenth),
 * with BENCH_WARMING_SUBSCRIBERS StreamEvents subscribers (real gRPC: a grpc-js server with
 * WarmingService here; one Connect client and HTTP/2 connection per subscriber, in a child
 * process, bench/subscribers.ts), each asking for every event after the last id written before
 * the run. Reported: events written, events delivered per second (all subscribers together),
 * whether every subscriber got every event, delivery lag (receipt − the event's timestamp), and
 * the workers' actions/s and lag beside the runs without subscribers.
 *
 * Knobs (env): BENCH_WARMING_TASKS=10000  BENCH_WARMING_ACTIONS=3 (per task)
 * BENCH_WARMING_SECONDS=30 (paced length)  BENCH_WARMING_BATCH, BENCH_WARMING_CONCURRENCY (default: the worker's defaults)
 * BENCH_WARMING_BASE_LOOPS=2 (baseline connections)  BENCH_WARMING_SUBSCRIBERS=100
 * BENCH_WARMING_FANOUT_TASKS=TASKS/10  BENCH_STORES=pglite,postgres  BENCH_WARMING_ROUNDS=3
 * BENCH_GRAPHILE_CONCURRENCY=32  BENCH_GRAPHILE_BATCH=500 (its localQueue size)
 * BENCH_GRAPHILE_BOOKKEEPING=0 (skips the graphile-worker + bookkeeping run)
 * BENCH_WARMING_RUNS=paced,saturated,fanout (which runs)
 * BENCH_AUTO_EXPLAIN=5ms (PostgreSQL: the bench database loads auto_explain and logs the plans, with
 * actual times, of statements slower than that to the server's log)  BENCH_COST_TABLES=1 (row
 * writes per action by table)
 * BENCH_GROWTH=1 (takes minutes: seeds 3,000,000 action rows): BENCH_GROWTH_TASKS=100000 ×
 * BENCH_GROWTH_ACTIONS=30, paced at BENCH_GROWTH_RATE=1000 due/s for BENCH_WARMING_SECONDS, then
 * saturated over the first BENCH_GROWTH_SAMPLE=30000 actions, beside the 10,000-task figure
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, cpus } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { ExecuteActionResponseSchema } from "../src/gen/conveer/v1/platform_pb.js";
import { createAuthenticator } from "../src/auth/tokens.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../src/server/grpc-server.ts";
import { createMetrics } from "../src/server/metrics.ts";
import type { Db } from "../src/store/db.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { migrate } from "../src/store/migrate.ts";
import { openPglite } from "../src/store/pglite.ts";
import { openPostgres } from "../src/store/postgres.ts";
import { systemClock } from "../src/warming/clock.ts";
import type { Clock } from "../src/warming/clock.ts";
import { fakeAccounts } from "../src/warming/fake-peers.ts";
import type { WarmingPeers } from "../src/warming/peers.ts";
import { planTask } from "../src/warming/planner.ts";
import { parseScenario } from "../src/warming/scenario.ts";
import { createWarming } from "../src/warming/warming.ts";
import type { Warming } from "../src/warming/warming.ts";
import { warmingService } from "../src/warming/warming-service.ts";
import { WORKER_DEFAULTS } from "../src/warming/worker.ts";
import { Loadgen } from "./loadgen-process.ts";
import { envInt, fmt, median, quantile, table } from "./stats.ts";
import { drainGraphileJobs, seedBookkeepingJobs, seedGraphileJobs } from "./graphile-drain.ts";
import { serveOnLoopback } from "./loopback.ts";
import { costMeter } from "./pg-cost.ts";
import type { Cost } from "./pg-cost.ts";
import type { SubscribersMessage, SubscribersResult } from "./subscribers.ts";

const TASKS = envInt("BENCH_WARMING_TASKS", 10_000);
const ACTIONS = envInt("BENCH_WARMING_ACTIONS", 3);
const SECONDS = envInt("BENCH_WARMING_SECONDS", 30);
const BATCH = envInt("BENCH_WARMING_BATCH", WORKER_DEFAULTS.batchSize);
const CONCURRENCY = envInt("BENCH_WARMING_CONCURRENCY", WORKER_DEFAULTS.concurrency);
const BASE_LOOPS = envInt("BENCH_WARMING_BASE_LOOPS", 2);
const SUBSCRIBERS = envInt("BENCH_WARMING_SUBSCRIBERS", 100);
const ROUNDS = envInt("BENCH_WARMING_ROUNDS", 3);
const GRAPHILE_CONCURRENCY = envInt("BENCH_GRAPHILE_CONCURRENCY", 32);
const GRAPHILE_BATCH = envInt("BENCH_GRAPHILE_BATCH", 500);
const GRAPHILE_BOOKKEEPING = process.env.BENCH_GRAPHILE_BOOKKEEPING !== "0";
const RUNS = new Set((process.env.BENCH_WARMING_RUNS ?? "paced,saturated,fanout").split(",").map((s) => s.trim()));
const GROWTH = process.env.BENCH_GROWTH === "1";
const GROWTH_TASKS = envInt("BENCH_GROWTH_TASKS", 100_000);
const GROWTH_ACTIONS = envInt("BENCH_GROWTH_ACTIONS", 30);
const GROWTH_RATE = envInt("BENCH_GROWTH_RATE", 1000);
const GROWTH_SAMPLE = envInt("BENCH_GROWTH_SAMPLE", 30_000);
const FANOUT_TASKS = envInt("BENCH_WARMING_FANOUT_TASKS", Math.max(1, Math.round(TASKS / 10)));
const PG_URL = process.env.BENCH_DATABASE_URL || process.env.CONVEER_TEST_DATABASE_URL || "";
const STORES = (process.env.BENCH_STORES ?? "pglite,postgres")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s === "pglite" || (s === "postgres" && PG_URL)) as ("pglite" | "postgres")[];

const DAY = 86_400_000;
const T0 = Date.parse("2030-01-07T00:00:00Z");
const SCALE = DAY / (SECONDS * 1000);
const say = (s: string) => process.stderr.write(`[bench:warming] ${s}\n`);
const silent = pino({ level: "silent" });

const scenario = parseScenario(
  { id: "bench", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: Math.ceil(ACTIONS / 2), like_post: Math.floor(ACTIONS / 2) } }] },
  "bench",
);

const growthScenario = parseScenario(
  { id: "bench", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: Math.ceil(GROWTH_ACTIONS / 2), like_post: Math.floor(GROWTH_ACTIONS / 2) } }] },
  "bench-growth",
);

/** The system clock at `scale`, reading `at` now. */
function clockAt(at: number, scale: number): Clock {
  const base = systemClock(scale);
  const offset = at - base.now();
  return { now: () => base.now() + offset, sleep: (ms, signal) => base.sleep(ms, signal) };
}

/** `db` with its statements counted (a transaction counts its BEGIN and COMMIT too). */
function counted(db: Db): { db: Db; statements: () => number } {
  let n = 0;
  const wrap = <T extends object>(q: T): T =>
    new Proxy(q, {
      get(t, p) {
        if (p === "query") return (...a: unknown[]) => (n++, (t as unknown as Db).query(...(a as [string, unknown[]])));
        if (p === "transaction") return (fn: (tx: unknown) => Promise<unknown>) => ((n += 2), (t as unknown as Db).transaction((tx) => fn(wrap(tx))));
        const v = Reflect.get(t, p);
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
  return { db: wrap(db), statements: () => n };
}

type Row = { store: string; run: string; mode: string; actions: number; perSec: number; offered?: number; p50?: number; p99?: number; max?: number; note: string };

/** Bulk-inserts `n` RUNNING tasks planned from T0 (phase tag in scenario_id), with fake accounts. */
async function seedTasks(db: Db, n: number, phase: string, accounts: ReturnType<typeof fakeAccounts>, plan = scenario): Promise<{ ids: string[]; actions: number }> {
  const newId = createIdGenerator();
  const ids: string[] = [];
  let actions = 0;
  for (let done = 0; done < n; ) {
    const m = Math.min(1000, n - done);
    const tasks: Record<string, unknown>[] = [];
    const acts: Record<string, unknown>[] = [];
    for (let i = 0; i < m; i++) {
      const id = newId();
      const account = newId();
      accounts.add(account, "vk", AccountStatus.WARMING);
      const planned = planTask(plan, { startAt: new Date(T0), seed: id });
      ids.push(id);
      actions += planned.length;
      const first = planned[0].at.toISOString();
      tasks.push({ id, account_id: account, platform: "vk", scenario_id: `bench-${phase}`, total_days: 1, total_actions: planned.length, day1_at: new Date(T0).toISOString(), run_at: first, next_action_at: first, started_at: new Date(T0).toISOString() });
      for (const a of planned) acts.push({ task_id: id, seq: a.seq, day: a.day, kind: a.kind, due_at: a.at.toISOString(), key: a.key });
    }
    await db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO warming_tasks (id, account_id, platform, scenario_id, status, total_days, total_actions, day1_at, next_action_at, started_at, current_day)
         SELECT id, account_id, platform, scenario_id, 2, total_days, total_actions, day1_at, next_action_at, started_at, 1
         FROM jsonb_to_recordset($1::jsonb) AS r(id text, account_id text, platform text, scenario_id text, total_days int, total_actions int, day1_at timestamptz, next_action_at timestamptz, started_at timestamptz)`,
        [JSON.stringify(tasks)],
      );
      await tx.query("INSERT INTO warming_due (task_id, seq, run_at) SELECT id, 0, run_at FROM jsonb_to_recordset($1::jsonb) AS r(id text, run_at timestamptz)", [JSON.stringify(tasks)]);
      await tx.query(
        `INSERT INTO warming_actions (task_id, seq, day, kind, due_at, key)
         SELECT task_id, seq, day, kind, due_at, key FROM jsonb_to_recordset($1::jsonb) AS r(task_id text, seq int, day int, kind text, due_at timestamptz, key text)`,
        [JSON.stringify(acts)],
      );
    });
    done += m;
  }
  return { ids, actions };
}

/** Copies a phase's planned due times into the baseline's job table. */
async function seedJobs(db: Db, phase: string): Promise<number> {
  const r = await db.query(
    `INSERT INTO bench_jobs (phase, run_at) SELECT $1, a.due_at FROM warming_actions a JOIN warming_tasks t ON t.id = a.task_id WHERE t.scenario_id = $2`,
    [phase, `bench-${phase}`],
  );
  return r.rowCount;
}

/** Samples a counter every 100 ms; the sustained rate is the slope over the middle 80 % of the work. */
function sampler(count: () => number | Promise<number>) {
  const samples: { t: number; n: number }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  const take = async () => {
    if (busy) return;
    busy = true;
    try {
      samples.push({ t: performance.now(), n: await count() });
    } finally {
      busy = false;
    }
  };
  return {
    start(): void {
      void take();
      timer = setInterval(() => void take(), 100);
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      await take();
    },
    /** Units per second between 10 % and 90 % of `total`. */
    sustained(total: number): number {
      const lo = samples.find((s) => s.n >= total * 0.1);
      const hi = samples.find((s) => s.n >= total * 0.9);
      // Too short to sample (a small run): the caller falls back to the whole run.
      if (!lo || !hi || hi.t - lo.t < 300) return Number.NaN;
      return ((hi.n - lo.n) * 1000) / (hi.t - lo.t);
    },
  };
}

/** The bare baseline: claim a batch with SKIP LOCKED, mark it done; `loops` connections at once. */
async function baseline(db: Db, phase: string, total: number, clock: Clock, saturated: boolean): Promise<{ lags: Float64Array; ms: number; sustained: number }> {
  const lags = new Float64Array(total);
  let n = 0;
  let stop = false;
  const s = sampler(() => n);
  const t0 = performance.now();
  s.start();
  const loop = async () => {
    while (!stop && n < total) {
      const now = clock.now();
      const r = await db.query<{ id: number; run_at: Date }>(
        `UPDATE bench_jobs SET status = 1, claimed_at = $1::timestamptz
         WHERE id IN (SELECT id FROM bench_jobs WHERE phase = $2 AND status = 0 AND run_at <= $1::timestamptz ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id, run_at`,
        [new Date(now), phase, BATCH],
      );
      const at = clock.now();
      if (r.rows.length > 0) {
        await db.query("UPDATE bench_jobs SET status = 2 WHERE id = ANY($1::bigint[])", [r.rows.map((x) => x.id)]);
        for (const row of r.rows) lags[n++] = (at - row.run_at.getTime()) / SCALE;
      }
      if (r.rows.length < BATCH && !saturated) {
        const next = (await db.query<{ at: Date | null }>("SELECT min(run_at) AS at FROM bench_jobs WHERE phase = $1 AND status = 0", [phase])).rows[0].at;
        if (!next) break;
        const wait = next.getTime() - clock.now();
        if (wait > 0) await Promise.race([clock.sleep(wait), new Promise((res) => setTimeout(res, 200))]);
      }
    }
  };
  await Promise.all(Array.from({ length: BASE_LOOPS }, loop));
  stop = true;
  const ms = performance.now() - t0;
  await s.stop();
  return { lags: lags.subarray(0, n), ms, sustained: s.sustained(total) };
}

type Fanout = Omit<SubscribersResult, "type"> & { written: number };

/**
 * Serves WarmingService for `w` over real gRPC and opens `n` StreamEvents subscribers to it in a
 * child process (bench/subscribers.ts), each from after event `afterId`; stop() waits until every
 * one has what the store holds after afterId (or 60 s; dropped subscribers resume), then measures.
 */
async function subscribe(w: Warming, db: Db, n: number, afterId: number, clock: Clock) {
  const shutdown = new AbortController();
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const { definition, handlers } = grpcServiceOf(warmingService(w), { log: silent, auth: createAuthenticator({ db, mode: "auto" }), metrics: createMetrics(), shutdown: shutdown.signal });
  server.addService(definition, handlers);
  const served = await serveOnLoopback(server, () => shutdown.abort());
  const child = await Loadgen.start<SubscribersMessage>("./subscribers.ts");
  await child.send({ type: "open", addr: `127.0.0.1:${served.port}`, n, afterId, scenarioAt: clock.now(), wallAt: Date.now(), scale: SCALE });
  return {
    async stop(): Promise<Fanout> {
      try {
        const written = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_events WHERE id > $1", [afterId])).rows[0].n;
        const { type: _, ...r } = (await child.send({ type: "collect", written })) as unknown as SubscribersResult;
        return { written, ...r };
      } finally {
        await child.stop();
        await served.stop();
      }
    },
  };
}

/** Warming itself over a phase's tasks: the worker, the event hub, fake peers. */
async function warmingRun(
  db: Db,
  phase: string,
  ids: string[],
  total: number,
  clock: Clock,
  accounts: ReturnType<typeof fakeAccounts>,
  o: { subscribers?: number; scale?: number; until?: { recorded?: number; ms?: number }; meterUrl?: string } = {},
): Promise<{ lags: Float64Array; ms: number; sustained: number; stats: string; fanout?: Fanout; cost?: Cost & { statements: number; recorded: number } }> {
  const { subscribers = 0, scale = SCALE, until } = o;
  const c = counted(db);
  const started = new Map<string, number>();
  const ok = create(ExecuteActionResponseSchema, { success: true, result: { actionType: "", durationMs: 0n } });
  const platforms: WarmingPeers["platforms"] = () => ({
    async executeAction(req) {
      started.set(req.params?.idempotency_key ?? "", clock.now());
      return ok;
    },
  });
  const w = createWarming({
    db: c.db,
    peers: { accounts: accounts.peer, platforms },
    clock,
    newId: createIdGenerator(),
    log: silent,
    scenarios: new Map([["bench", scenario]]),
    options: { batchSize: BATCH, concurrency: CONCURRENCY, idleRecheckMs: 200, maintenanceMs: 10_000 },
  });
  const s = sampler(() => w.workerStats().recorded);
  const afterId = (await db.query<{ n: number }>("SELECT coalesce(max(id), 0)::int AS n FROM warming_events")).rows[0].n;
  const meter = o.meterUrl ? await costMeter(o.meterUrl) : undefined;
  const n0 = c.statements();
  const t0 = performance.now();
  await w.start();
  const fans = subscribers > 0 ? await subscribe(w, db, subscribers, afterId, clock) : undefined;
  s.start();
  const deadline = Date.now() + SECONDS * 4000 + 120_000;
  for (;;) {
    // A growth run stops after a sample (a count recorded, or a time) instead of draining every task.
    if (until && (w.workerStats().recorded >= (until.recorded ?? Infinity) || performance.now() - t0 >= (until.ms ?? Infinity))) break;
    const left = until ? 1 : (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_tasks WHERE scenario_id = $1 AND status = 2", [`bench-${phase}`])).rows[0].n;
    if (left === 0) break;
    if (Date.now() > deadline) throw new Error(`warming ${phase}: ${left} tasks still running at the deadline`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const ms = performance.now() - t0;
  await s.stop();
  const st = w.workerStats();
  const statements = c.statements() - n0;
  const cost = meter && { ...(await meter.stop(settlePool(db))), statements, recorded: st.recorded };
  const fanout = await fans?.stop();
  await w.stop(2000);
  const due = await db.query<{ key: string; due_at: Date }>("SELECT a.key, a.due_at FROM warming_actions a WHERE a.task_id = ANY($1::text[]) AND a.started_at IS NOT NULL", [ids]);
  const lags = new Float64Array(due.rows.length);
  let i = 0;
  for (const r of due.rows) {
    const at = started.get(r.key);
    if (at !== undefined) lags[i++] = (at - r.due_at.getTime()) / scale;
  }
  if (i !== total && !until) say(`warning: ${total - i} planned actions of ${phase} were not run`);
  return { lags: lags.subarray(0, i), ms, sustained: s.sustained(until?.recorded ?? total), stats: `${st.claims} claims, ${fmt(st.claimed / Math.max(1, st.claims), 1)}/claim`, fanout, cost };
}

async function openBench(kind: "pglite" | "postgres"): Promise<{ db: Db; url?: string; close(): Promise<void> }> {
  if (kind === "pglite") {
    const dir = await mkdtemp(join(tmpdir(), "conveer-bench-warming-"));
    const db = await openPglite(join(dir, "pgdata"));
    await migrate(db);
    return {
      db,
      async close() {
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const name = `conveer_bench_warming_${randomBytes(5).toString("hex")}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  if (process.env.BENCH_AUTO_EXPLAIN) for (const x of ["session_preload_libraries = 'auto_explain'", `auto_explain.log_min_duration = '${process.env.BENCH_AUTO_EXPLAIN}'`, "auto_explain.log_analyze = on", "auto_explain.log_buffers = on"]) await admin(`ALTER DATABASE ${name} SET ${x}`);
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  const db = openPostgres({ url: u.toString(), max: 20 });
  await migrate(db);
  return {
    db,
    url: u.toString(),
    async close() {
      await db.close();
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

const fanouts: (Fanout & { store: string; mode: string })[] = [];

type Seed = (phase: string, n?: number) => Promise<{ ids: string[]; actions: number }>;
/** One saturated figure per run kind and round (actions or jobs per second, sustained). */
const saturatedFigures: { store: string; bare: number[]; graphile: number[]; graphileBk: number[]; warming: number[] }[] = [];
/** Per operation (an action, a job) of one saturated run: CPU µs of this process and of the database's backends, transactions, row writes. */
type PerOp = { serverUs: number; dbUs: number; xacts: number; writes: number; hot: number; statements?: number };
const saturatedCosts: { store: string; bare: PerOp[]; graphile: PerOp[]; graphileBk: PerOp[]; warming: PerOp[] }[] = [];
const perOp = (c: Cost & { statements?: number }, n: number): PerOp => ({
  serverUs: (c.serverMs * 1000) / n,
  dbUs: (c.dbMs * 1000) / n,
  xacts: c.xacts / n,
  writes: (c.ins + c.upd + c.del) / n,
  hot: c.hot / n,
  ...(c.statements !== undefined ? { statements: c.statements / n } : {}),
});
/** Makes every pool connection of db run a statement a second after the run: each reports its statistics then. */
const settlePool = (db: Db) => async () => {
  await new Promise((r) => setTimeout(r, 1100));
  await Promise.all(Array.from({ length: 20 }, () => db.query("SELECT pg_sleep(0.05)")));
};

/**
 * The saturated runs, interleaved: each round seeds a fresh backlog of TASKS tasks (and as many
 * bare jobs as planned actions), then runs the bare loop, graphile-worker and graphile-worker +
 * bookkeeping (PostgreSQL only; each seeds its jobs, one per planned action, right before it runs,
 * so that neither drains a queue holding the other's) and warming over it, the order rotating by
 * round. Answers the median rows.
 */
async function saturatedRounds(kind: "pglite" | "postgres", db: Db, url: string | undefined, seed: Seed, accounts: ReturnType<typeof fakeAccounts>): Promise<Row[]> {
  const figures = { store: kind, bare: [] as number[], graphile: [] as number[], graphileBk: [] as number[], warming: [] as number[] };
  const costs = { store: kind, bare: [] as PerOp[], graphile: [] as PerOp[], graphileBk: [] as PerOp[], warming: [] as PerOp[] };
  const notes = { bare: "", graphile: "", graphileBk: "", warming: "" };
  let backlog = 0;
  const rate = (r: { sustained: number; n: number; ms: number }) => (Number.isFinite(r.sustained) ? r.sustained : (r.n * 1000) / r.ms);
  for (let round = 0; round < ROUNDS; round++) {
    const phase = `saturated-${round}`;
    const sat = await seed(phase);
    backlog = sat.actions;
    const runs = {
      bare: async () => {
        say(`${kind}: round ${round + 1}/${ROUNDS}, bare loop, saturated (${sat.actions} overdue)`);
        const meter = url ? await costMeter(url) : undefined;
        const b = await baseline(db, phase, sat.actions, clockAt(T0 + 2 * DAY, SCALE), true);
        if (meter) costs.bare.push(perOp(await meter.stop(settlePool(db)), b.lags.length));
        figures.bare.push(rate({ sustained: b.sustained, n: b.lags.length, ms: b.ms }));
        notes.bare = `${BASE_LOOPS} loops`;
      },
      graphile: async () => {
        if (!url) return;
        await seedGraphileJobs(url, sat.actions);
        // Statistics as a live queue's would be: seed()'s ANALYZE ran while its table was empty, and
        // that plan runs graphile-worker's fetch at ~100 jobs/s.
        await db.query("ANALYZE graphile_worker._private_jobs");
        say(`${kind}: round ${round + 1}/${ROUNDS}, graphile-worker, saturated (${sat.actions} jobs)`);
        let n = 0;
        const s = sampler(() => n);
        const meter = await costMeter(url);
        const t0 = performance.now();
        s.start();
        await drainGraphileJobs({ url, concurrency: GRAPHILE_CONCURRENCY, batch: GRAPHILE_BATCH }, sat.actions, () => n++);
        costs.graphile.push(perOp(await meter.stop(), n));
        const ms = performance.now() - t0;
        await s.stop();
        figures.graphile.push(rate({ sustained: s.sustained(sat.actions), n, ms }));
        notes.graphile = `0.18, concurrency ${GRAPHILE_CONCURRENCY}, localQueue ${GRAPHILE_BATCH}, completeJobBatchDelay 0`;
      },
      graphileBk: async () => {
        if (!url || !GRAPHILE_BOOKKEEPING) return;
        const jobs = await seedBookkeepingJobs(url, `bench-${phase}`);
        await db.query("ANALYZE graphile_worker._private_jobs");
        say(`${kind}: round ${round + 1}/${ROUNDS}, graphile-worker + bookkeeping, saturated (${jobs} jobs)`);
        let n = 0;
        const s = sampler(() => n);
        const meter = await costMeter(url);
        const t0 = performance.now();
        s.start();
        await drainGraphileJobs({ url, concurrency: GRAPHILE_CONCURRENCY, batch: GRAPHILE_BATCH }, jobs, () => n++, "bookkeeping");
        const cost = await meter.stop();
        costs.graphileBk.push(perOp(cost, n));
        if (process.env.BENCH_COST_TABLES) say(`row writes per job by table (inserted/updated/of them HOT/deleted): ${Object.entries(cost.tables).map(([k, v]) => `${k} ${[v.ins, v.upd, v.hot, v.del].map((x) => fmt(x / n, 2)).join("/")}`).join("; ")}`);
        const ms = performance.now() - t0;
        await s.stop();
        figures.graphileBk.push(rate({ sustained: s.sustained(jobs), n, ms }));
        notes.graphileBk = `same settings; per job one statement via withPgClient: action + task updated, 2 events inserted; completion batched apart`;
      },
      warming: async () => {
        say(`${kind}: round ${round + 1}/${ROUNDS}, warming, saturated`);
        const w = await warmingRun(db, phase, sat.ids, sat.actions, clockAt(T0 + 2 * DAY, SCALE), accounts, { meterUrl: url });
        if (w.cost) costs.warming.push(perOp(w.cost, w.cost.recorded));
        if (w.cost && process.env.BENCH_COST_TABLES) say(`row writes per action by table (inserted/updated/of them HOT/deleted): ${Object.entries(w.cost.tables).map(([k, v]) => `${k} ${[v.ins, v.upd, v.hot, v.del].map((x) => fmt(x / w.cost!.recorded, 2)).join("/")}`).join("; ")}`);
        figures.warming.push(rate({ sustained: w.sustained, n: w.lags.length, ms: w.ms }));
        notes.warming = w.stats;
      },
    };
    const kinds = (["bare", "graphile", "graphileBk", "warming"] as const).filter((k) => k !== "graphileBk" || (url && GRAPHILE_BOOKKEEPING));
    const order = kinds.map((_, i, a) => a[(i + round) % a.length]);
    for (const k of order) await runs[k]();
  }
  saturatedFigures.push(figures);
  if (url) saturatedCosts.push(costs);
  const row = (run: string, xs: number[], note: string): Row => ({ store: kind, run, mode: "saturated", actions: backlog, perSec: median(xs), note: `median of ${xs.length}: ${xs.map((x) => fmt(x)).join(", ")}; ${note}` });
  return [
    row("bare SKIP LOCKED", figures.bare, notes.bare),
    ...(url ? [row("graphile-worker batched", figures.graphile, notes.graphile)] : []),
    ...(figures.graphileBk.length ? [row("graphile-worker + bookkeeping", figures.graphileBk, notes.graphileBk)] : []),
    row("warming", figures.warming, notes.warming),
  ];
}

/**
 * BENCH_GROWTH=1: GROWTH_TASKS tasks × GROWTH_ACTIONS planned actions in the tables. Paced: the
 * day compressed so that GROWTH_RATE actions fall due per second, for SECONDS (lag p99); then
 * saturated (everything overdue): the sustained rate over the first GROWTH_SAMPLE actions, beside
 * the 10,000-task saturated median of this run.
 */
async function growthRuns(kind: "pglite" | "postgres", db: Db, accounts: ReturnType<typeof fakeAccounts>, url?: string): Promise<Row[]> {
  const t = performance.now();
  const g = await seedTasks(db, GROWTH_TASKS, "growth", accounts, growthScenario);
  // A store holding 3,000,000 actions got there over days: its pages vacuumed (hint bits set, the
  // visibility map kept) and its WAL checkpointed. Straight after a bulk seed the first reads
  // write every page back and the seed's WAL forces checkpoints all through the paced run (an
  // fsync of 1.2–1.3 s fell inside it twice): that measured the seed, not the scheduler.
  await db.query("VACUUM ANALYZE");
  await db.query("CHECKPOINT");
  say(`${kind}: seeded ${GROWTH_TASKS} growth tasks, ${g.actions} actions in ${fmt((performance.now() - t) / 1000, 1)} s`);
  const scale = DAY / ((g.actions / GROWTH_RATE) * 1000);
  const name = `warming, ${GROWTH_TASKS} tasks × ${GROWTH_ACTIONS}`;
  say(`${kind}: ${name}, paced (${GROWTH_RATE} due/s for ${SECONDS} s)`);
  const p = await warmingRun(db, "growth", g.ids, g.actions, clockAt(T0, scale), accounts, { scale, until: { ms: SECONDS * 1000 } });
  const paced: Row = { store: kind, run: name, mode: "paced", actions: p.lags.length, perSec: (p.lags.length * 1000) / p.ms, offered: GROWTH_RATE, p50: quantile(p.lags, 0.5), p99: quantile(p.lags, 0.99), max: quantile(p.lags, 1), note: p.stats };
  say(`${kind}: ${name}, saturated (the first ${GROWTH_SAMPLE} of ${g.actions} overdue)`);
  const s = await warmingRun(db, "growth", g.ids, g.actions, clockAt(T0 + 2 * DAY, scale), accounts, { scale, until: { recorded: GROWTH_SAMPLE }, meterUrl: url });
  const c = s.cost && perOp(s.cost, s.cost.recorded);
  const cpu = c ? `; per action: server CPU ${fmt(c.serverUs)} µs, database CPU ${fmt(c.dbUs)} µs, ${fmt(c.writes, 2)} row writes` : "";
  const rate = Number.isFinite(s.sustained) ? s.sustained : (s.lags.length * 1000) / s.ms;
  const base = saturatedFigures.find((f) => f.store === kind)?.warming ?? [];
  const vs = base.length ? `; ${fmt(rate / median(base), 2)} × the ${TASKS}-task saturated median` : "";
  return [paced, { store: kind, run: name, mode: "saturated", actions: s.lags.length, perSec: rate, note: `${s.stats}${vs}${cpu}` }];
}

async function benchStore(kind: "pglite" | "postgres"): Promise<Row[]> {
  const rows: Row[] = [];
  const { db, url, close } = await openBench(kind);
  try {
    await db.query(`CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, phase text NOT NULL, run_at timestamptz NOT NULL, status smallint NOT NULL DEFAULT 0, claimed_at timestamptz)`);
    await db.query("CREATE INDEX bench_jobs_due ON bench_jobs (phase, run_at) WHERE status = 0");
    const accounts = fakeAccounts();
    // Each phase is seeded right before it runs: a worker claims every RUNNING task that is due.
    const seed = async (phase: string, n = TASKS) => {
      const t = performance.now();
      const r = await seedTasks(db, n, phase, accounts);
      await seedJobs(db, phase);
      await db.query("ANALYZE");
      say(`${kind}: seeded ${n} ${phase} tasks, ${r.actions} actions and as many baseline jobs in ${fmt((performance.now() - t) / 1000, 1)} s`);
      return r;
    };
    const lagRow = (run: string, lags: Float64Array, ms: number, note: string, offeredPerSec: number): Row => ({
      store: kind,
      run,
      mode: "paced",
      actions: lags.length,
      perSec: (lags.length * 1000) / ms,
      offered: offeredPerSec,
      p50: quantile(lags, 0.5),
      p99: quantile(lags, 0.99),
      max: quantile(lags, 1),
      note,
    });

    // Paced: the same schedule (a day in SECONDS) for both.
    if (RUNS.has("paced")) {
      const paced = await seed("paced");
      const offered = paced.actions / SECONDS;
      say(`${kind}: baseline, paced (${fmt(offered)} due/s for ${SECONDS} s)`);
      const bp = await baseline(db, "paced", paced.actions, clockAt(T0, SCALE), false);
      rows.push(lagRow("bare SKIP LOCKED", bp.lags, bp.ms, `${BASE_LOOPS} loops`, offered));
      say(`${kind}: warming, paced`);
      const wp = await warmingRun(db, "paced", paced.ids, paced.actions, clockAt(T0, SCALE), accounts);
      rows.push(lagRow("warming", wp.lags, wp.ms, wp.stats, offered));
    }

    // Saturated: everything overdue (the clock two days past the plans); ROUNDS rounds, each on a
    // fresh backlog, the bare loop, graphile-worker (PostgreSQL) and warming in a rotating order.
    if (RUNS.has("saturated")) rows.push(...(await saturatedRounds(kind, db, url, seed, accounts)));

    // StreamEvents subscribers: paced (what they sustain), then saturated (the ceiling, and drops).
    if (RUNS.has("fanout")) {
      const fp = await seed("fanout-paced", FANOUT_TASKS);
      say(`${kind}: warming, paced (${fmt(fp.actions / SECONDS)} due/s), ${SUBSCRIBERS} StreamEvents subscribers`);
      const wfp = await warmingRun(db, "fanout-paced", fp.ids, fp.actions, clockAt(T0, SCALE), accounts, { subscribers: SUBSCRIBERS });
      rows.push(lagRow(`warming + ${SUBSCRIBERS} StreamEvents`, wfp.lags, wfp.ms, wfp.stats, fp.actions / SECONDS));
      fanouts.push({ store: kind, mode: "paced", ...wfp.fanout! });

      const fan = await seed("fanout", FANOUT_TASKS);
      say(`${kind}: warming, saturated, ${SUBSCRIBERS} StreamEvents subscribers`);
      const wf = await warmingRun(db, "fanout", fan.ids, fan.actions, clockAt(T0 + 2 * DAY, SCALE), accounts, { subscribers: SUBSCRIBERS });
      rows.push({
        store: kind,
        run: `warming + ${SUBSCRIBERS} StreamEvents`,
        mode: "saturated",
        actions: wf.lags.length,
        perSec: Number.isFinite(wf.sustained) ? wf.sustained : (wf.lags.length * 1000) / wf.ms,
        note: `${wf.stats}; whole run ${fmt((wf.lags.length * 1000) / wf.ms)}/s`,
      });
      fanouts.push({ store: kind, mode: "saturated", ...wf.fanout! });
    }
    if (GROWTH) rows.push(...(await growthRuns(kind, db, accounts, url)));
    const ev = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_events")).rows[0].n;
    say(`${kind}: ${ev} events written`);
  } finally {
    await close();
  }
  return rows;
}

async function main(): Promise<void> {
  if (STORES.length === 0) throw new Error("no store to benchmark: BENCH_STORES names none available (postgres needs BENCH_DATABASE_URL or CONVEER_TEST_DATABASE_URL)");
  say(`${TASKS} tasks × ${ACTIONS} actions, a scenario day in ${SECONDS} s (time scale ${fmt(SCALE)}), batch ${BATCH}, concurrency ${CONCURRENCY}; ${cpus().length} CPUs, node ${process.version}`);
  const rows: Row[] = [];
  for (const kind of STORES) rows.push(...(await benchStore(kind)));
  const out = [
    ["store", "run", "mode", "actions", "actions/s", "offered/s", "lag p50 ms", "lag p99 ms", "lag max ms", "notes"],
    ...rows.map((r) => [r.store, r.run, r.mode, String(r.actions), fmt(r.perSec), r.offered ? fmt(r.offered) : "-", r.p50 !== undefined ? fmt(r.p50, 1) : "-", r.p99 !== undefined ? fmt(r.p99, 1) : "-", r.max !== undefined ? fmt(r.max, 1) : "-", r.note]),
  ];
  console.log(table(out));
  console.log(
    "\nactions/s: paced = actions / wall time of the run (≈ offered when keeping up); saturated = sustained rate over the middle 80 % of the backlog.\n" +
      "lag = actual start − due (real ms; warming: when the platform call started; baseline: when the claim returned).",
  );
  for (const f of saturatedFigures) {
    const w = median(f.warming);
    const g = f.graphile.length ? `, ${fmt(w / median(f.graphile), 2)} × graphile-worker batched (${fmt(median(f.graphile))} jobs/s)` : ", graphile-worker: PostgreSQL only";
    const gb = f.graphileBk.length ? `, ${fmt(w / median(f.graphileBk), 2)} × graphile-worker + bookkeeping (${fmt(median(f.graphileBk))} jobs/s)` : "";
    console.log(`${f.store}: warming saturated ${fmt(w)} actions/s = ${fmt(w / median(f.bare), 2)} × bare SKIP LOCKED (${fmt(median(f.bare))}/s)${g}${gb}; medians of ${f.warming.length} interleaved rounds`);
  }
  for (const c of saturatedCosts) {
    const m = (xs: PerOp[], k: keyof PerOp, d = 0) => (xs.length && xs[0][k] !== undefined ? fmt(median(xs.map((x) => x[k]!)), d) : "-");
    console.log(`\n${c.store}, saturated, per action or job (medians of the rounds; CPU of this process and of the database's backends, from /proc):`);
    console.log(
      table([
        ["run", "server CPU µs", "database CPU µs", "statements", "transactions", "row writes", "of them HOT updates"],
        ...(["bare", "graphile", "graphileBk", "warming"] as const).filter((k) => k !== "graphileBk" || c[k].length > 0).map((k) => [k === "graphileBk" ? "graphile + bookkeeping" : k, m(c[k], "serverUs"), m(c[k], "dbUs"), m(c[k], "statements", 2), m(c[k], "xacts", 3), m(c[k], "writes", 2), m(c[k], "hot", 2)]),
      ]),
    );
  }
  console.log(`\nStreamEvents fan-out (${SUBSCRIBERS} subscribers, each asking for every event, during the "+ StreamEvents" runs above, ${FANOUT_TASKS} tasks):`);
  console.log(
    table([
      ["store", "mode", "events written", "delivered", "delivered/s", "per subscriber/s", "got every event", "resumes", "duplicates", "lag p50 ms", "lag p99 ms"],
      ...fanouts.map((f) => [
        f.store,
        f.mode,
        String(f.written),
        String(f.delivered),
        fmt(f.delivered / f.seconds),
        fmt(f.delivered / f.seconds / SUBSCRIBERS),
        `${f.complete}/${SUBSCRIBERS}${f.failed.length ? ` (${f.failed.length} failed: ${f.failed[0].slice(0, 60)})` : ""}`,
        String(f.resumes),
        String(f.duplicates),
        fmt(f.lagP50, 1),
        fmt(f.lagP99, 1),
      ]),
    ]),
  );
  console.log(
    "lag = receipt − the event's timestamp (real ms), from the first ten subscribers. resumes: a subscriber more than 1,000 events behind is\n" +
      "dropped with RESOURCE_EXHAUSTED and reconnects with after_event_id = the last event it got (as `conveer warm watch` does).",
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
