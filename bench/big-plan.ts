/**
 * `node bench/big-plan.ts`: StartWarming of the largest plan a scenario may have
 * (MAX_PLANNED_ACTIONS), and what it does to other calls meanwhile.
 *
 * Per store (PGlite on disk in a temporary data directory, as `conveer start` runs it; PostgreSQL
 * when BENCH_DATABASE_URL or CONVEER_TEST_DATABASE_URL is set: a new database, dropped after):
 * - the real app (account + warming services, CONVEER_WARMING_WORKER=0 so no action runs) with an
 *   operator scenario file in CONVEER_SCENARIOS_DIR whose plan is exactly MAX_PLANNED_ACTIONS;
 * - a prober in a worker thread (its own event loop and client): GetAccount over real gRPC,
 *   open loop at BENCH_BIG_PLAN_RATE calls/s, each latency measured from when the call was due, so
 *   a stalled server shows as the whole stall in every call it held up;
 * - BENCH_BIG_PLAN_RUNS rounds (default 3) of: an idle baseline window, then StartWarming of the big
 *   scenario for a fresh account, timed by the client, with GetAccount latencies of the calls due
 *   while it ran.
 * Printed: per store, medians over the rounds of StartWarming's time and GetAccount p50/p99 idle vs
 * during, plus each round's figures.
 *
 * Knobs (env): BENCH_BIG_PLAN_RUNS=3  BENCH_BIG_PLAN_RATE=200  BENCH_BIG_PLAN_IDLE_MS=2000  BENCH_STORES=pglite,postgres
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { parse as parseYaml } from "yaml";
import { pino } from "pino";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { AccountService, GetAccountRequestSchema } from "../src/gen/conveer/v1/account_pb.js";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { startApp } from "../src/app.ts";
import { SERVICE_NAMES, loadConfig } from "../src/config/config.ts";
import { remoteClient } from "../src/server/clients.ts";
import { openStore } from "../src/store/open.ts";
import { MAX_PLANNED_ACTIONS, parseScenario } from "../src/warming/scenario.ts";
import { mostPlannedActions } from "../src/warming/planner.ts";
import { envInt, fmt, median, quantile, table } from "./stats.ts";
import { createBenchDatabase } from "./system.ts";

const RUNS = envInt("BENCH_BIG_PLAN_RUNS", 3);
const RATE = envInt("BENCH_BIG_PLAN_RATE", 200);
const IDLE_MS = envInt("BENCH_BIG_PLAN_IDLE_MS", 2000);
const PG_URL = process.env.BENCH_DATABASE_URL || process.env.CONVEER_TEST_DATABASE_URL || "";
const STORES = (process.env.BENCH_STORES ?? "pglite,postgres")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s === "pglite" || (s === "postgres" && PG_URL)) as ("pglite" | "postgres")[];

/** A GetAccount sample: when the call was due (ms, the prober's clock) and how long it took from then. */
type Sample = { due: number; ms: number; ok: boolean };
type ProbeMessage = { type: "start" } | { type: "stop" };

/**
 * The largest allowed plan: 365 days, every count fixed (so the drawn plan is the maximum), 137
 * actions a day for 360 days and 136 for the last 5: 49,320 + 680 = 50,000 = MAX_PLANNED_ACTIONS.
 */
function bigScenarioYaml(): string {
  const day = (n: number) => {
    const per = Math.floor(n / 8);
    const kinds = ["view_profile", "like_post", "subscribe", "comment", "send_message", "repost", "view_stories", "add_friend"];
    return `{ ${kinds.map((k, i) => `${k}: ${per + (i < n - per * 8 ? 1 : 0)}`).join(", ")} }`;
  };
  return [
    "id: big",
    "name: Largest allowed plan",
    "totalDays: 365",
    "days:",
    `  - { days: "1-360", window: { startHour: 0, endHour: 24 }, actions: ${day(137)} }`,
    `  - { days: "361-365", window: { startHour: 0, endHour: 24 }, actions: ${day(136)} }`,
    "",
  ].join("\n");
}

/** The prober thread: GetAccount(accountId) at RATE/s, open loop, until told to stop; answers the samples. */
function prober(): void {
  const { addr, accountId, rate } = workerData as { addr: string; accountId: string; rate: number };
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  const body = Buffer.from(toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId })));
  const id = (b: Buffer) => b;
  let samples: Sample[] = [];
  let timer: NodeJS.Timeout | undefined;
  let inFlight = 0;
  const stopped: (() => void)[] = [];
  const fire = (due: number) => {
    inFlight++;
    client.makeUnaryRequest("/conveer.AccountService/GetAccount", id, id, body, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err) => {
      samples.push({ due, ms: performance.now() - due, ok: !err });
      if (--inFlight === 0) stopped.splice(0).forEach((f) => f());
    });
  };
  parentPort!.on("message", (m: ProbeMessage) => {
    if (m.type === "start") {
      samples = [];
      const t0 = performance.now();
      const every = 1000 / rate;
      let n = 0;
      // Every call that fell due since the last tick goes out now, timed from when it was due.
      const tick = () => {
        const now = performance.now();
        while (t0 + n * every <= now) fire(t0 + n++ * every);
        timer = setTimeout(tick, Math.max(0, t0 + n * every - performance.now()));
      };
      tick();
      parentPort!.postMessage({ type: "started", origin: performance.timeOrigin });
    } else {
      clearTimeout(timer);
      const done = () => parentPort!.postMessage({ type: "samples", samples });
      if (inFlight === 0) done();
      else stopped.push(done);
    }
  });
}

/** The prober as seen from the main thread; times are converted to the main thread's performance.now(). */
async function startProber(addr: string, accountId: string) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { addr, accountId, rate: RATE }, execArgv: [] });
  let waiting: ((m: Record<string, unknown>) => void) | undefined;
  worker.on("message", (m: Record<string, unknown>) => waiting?.(m));
  const ask = (m: ProbeMessage) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      worker.once("error", reject);
      waiting = resolve;
      worker.postMessage(m);
    });
  let shift = 0;
  return {
    async start() {
      const r = await ask({ type: "start" });
      shift = (r.origin as number) - performance.timeOrigin;
    },
    async stop(): Promise<Sample[]> {
      const r = await ask({ type: "stop" });
      return (r.samples as Sample[]).map((s) => ({ ...s, due: s.due + shift }));
    },
    close: () => worker.terminate(),
  };
}

type Round = { startMs: number; idleP50: number; idleP99: number; duringP50: number; duringP99: number; during: number; errors: number };

async function benchStore(kind: "pglite" | "postgres", say: (s: string) => void): Promise<Round[]> {
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const dataDir = await mkdtemp(join(tmpdir(), "conveer-big-plan-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const scenariosDir = join(dataDir, "scenarios");
    await mkdir(scenariosDir);
    await writeFile(join(scenariosDir, "big.yaml"), bigScenarioYaml());
    const env: Record<string, string> = {
      CONVEER_DATA_DIR: dataDir,
      CONVEER_HTTP_ADDR: "127.0.0.1:0",
      CONVEER_MASTER_KEY: "42".repeat(32),
      CONVEER_LOG_LEVEL: "silent",
      CONVEER_SCENARIOS_DIR: scenariosDir,
      CONVEER_WARMING_WORKER: "0",
    };
    if (kind === "postgres") {
      const created = await createBenchDatabase(PG_URL);
      cleanups.push(created.drop);
      env.DATABASE_URL = created.url;
    }
    for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
    const config = loadConfig(env);
    const log = pino({ level: "silent" });
    const db = await openStore(config, log);
    const app = await startApp({ config, services: ["account", "warming"], db, log });
    cleanups.push(() => app.stop(1000));
    const accountAddr = `127.0.0.1:${app.ports.account}`;
    const accounts = remoteClient(AccountService, { addr: accountAddr });
    const warming = remoteClient(WarmingService, { addr: `127.0.0.1:${app.ports.warming}` });

    const probe = (await accounts.createAccount({ platform: "vk", login: "probe", password: "pw" })).id;
    const prober = await startProber(accountAddr, probe);
    cleanups.push(() => prober.close());
    // Warm-up: the prober's channel, the server's first calls, one small StartWarming.
    await prober.start();
    const warm = (await accounts.createAccount({ platform: "vk", login: "warm-up", password: "pw" })).id;
    await warming.startWarming({ accountId: warm, scenarioId: "basic" });
    await new Promise((r) => setTimeout(r, 500));
    await prober.stop();

    const rounds: Round[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const accountId = (await accounts.createAccount({ platform: "vk", login: `big-${run}`, password: "pw" })).id;
      await prober.start();
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const t0 = performance.now();
      const task = await warming.startWarming({ accountId, scenarioId: "big" });
      const t1 = performance.now();
      await new Promise((r) => setTimeout(r, 200));
      const samples = await prober.stop();
      const idle = samples.filter((s) => s.due < t0).map((s) => s.ms);
      const during = samples.filter((s) => s.due >= t0 && s.due <= t1);
      const rows = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_actions WHERE task_id = $1", [task.id]);
      if (rows.rows[0].n !== MAX_PLANNED_ACTIONS) throw new Error(`the task has ${rows.rows[0].n} planned actions, expected ${MAX_PLANNED_ACTIONS}`);
      const r: Round = {
        startMs: t1 - t0,
        idleP50: quantile(idle, 0.5),
        idleP99: quantile(idle, 0.99),
        duringP50: quantile(during.map((s) => s.ms), 0.5),
        duringP99: quantile(during.map((s) => s.ms), 0.99),
        during: during.length,
        errors: samples.filter((s) => !s.ok).length,
      };
      say(`${kind} round ${run}: StartWarming ${fmt(r.startMs)} ms; GetAccount idle p50/p99 ${fmt(r.idleP50, 1)}/${fmt(r.idleP99, 1)} ms, during ${fmt(r.duringP50, 1)}/${fmt(r.duringP99, 1)} ms (${r.during} calls)`);
      rounds.push(r);
    }
    const size = await db.query<{ mb: number }>("SELECT (pg_total_relation_size('warming_actions') / 1048576.0)::float8 AS mb");
    say(`${kind}: warming_actions holds ${RUNS + 1} tasks in ${fmt(size.rows[0].mb, 1)} MB (table and indexes)`);
    return rounds;
  } finally {
    for (const fn of cleanups.reverse()) await fn().catch((err) => say(`cleanup error: ${String(err)}`));
  }
}

async function main(): Promise<void> {
  const say = (s: string) => process.stderr.write(`[bench:big-plan] ${s}\n`);
  const scenario = parseScenario(parseYaml(bigScenarioYaml()), "big.yaml");
  if (mostPlannedActions(scenario) !== MAX_PLANNED_ACTIONS) throw new Error(`the bench scenario plans ${mostPlannedActions(scenario)}, not ${MAX_PLANNED_ACTIONS}`);
  const out: string[][] = [["store", "plan", "StartWarming ms (median; each)", "GetAccount idle p50/p99 ms", "during p50/p99 ms", "p99 during/idle"]];
  for (const kind of STORES) {
    const rounds = await benchStore(kind, say);
    const m = (f: (r: Round) => number) => median(rounds.map(f));
    out.push([
      kind,
      String(MAX_PLANNED_ACTIONS),
      `${fmt(m((r) => r.startMs))}; ${rounds.map((r) => fmt(r.startMs)).join(", ")}`,
      `${fmt(m((r) => r.idleP50), 1)} / ${fmt(m((r) => r.idleP99), 1)}`,
      `${fmt(m((r) => r.duringP50), 1)} / ${fmt(m((r) => r.duringP99), 1)}`,
      fmt(m((r) => r.duringP99) / m((r) => r.idleP99), 1),
    ]);
  }
  process.stdout.write(`\nStartWarming of the largest plan (${MAX_PLANNED_ACTIONS} actions), GetAccount at ${RATE}/s (open loop), medians of ${RUNS} rounds\n`);
  process.stdout.write(`${table(out)}\n`);
  if (!PG_URL) process.stdout.write("(PostgreSQL skipped: set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL)\n");
}

if (isMainThread) await main();
else prober();
