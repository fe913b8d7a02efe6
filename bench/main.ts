/**
 * `npm run bench`: Conveer's gRPC throughput and latency against a bare grpc-js server.
 *
 * 1. A bare baseline: plain grpc-js answering GetAccount with a fixed Account (bench/bare-server.ts).
 * 2. The real system (startApp: account + proxy, silent log) on PGlite, and on PostgreSQL when
 *    CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL is set (a fresh database, dropped after),
 *    seeded with 100,000 accounts and 2,000 proxies of capacity 1.
 * 3. A load generator in a child process (bench/loadgen.ts, the Connect gRPC client for every
 *    target) keeps 64 calls in flight: GetAccount on random ids, and AllocateProxy + ReleaseProxy
 *    pairs. Each measurement: 1 s warm-up, 5 s measured, 3 runs, the median reported.
 *
 * Knobs (env): BENCH_STORES=pglite,postgres  BENCH_SCENARIOS=get,pair  BENCH_BARE=0
 * BENCH_RUNS=3  BENCH_WARMUP_MS=1000  BENCH_DURATION_MS=5000  BENCH_CONCURRENCY=64
 * BENCH_ACCOUNTS=100000  BENCH_PROXIES=2000  BENCH_DIAG=1 (in-process component ceilings).
 */
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { availableParallelism, cpus, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { startBareServer } from "./bare-server.ts";
import { cpuBetween, snapshot } from "./cpu.ts";
import type { CpuSnapshot } from "./cpu.ts";
import { diagnose } from "./diag.ts";
import type { DiagResult } from "./diag.ts";
import type { LoadgenMessage, RunCommand, RunResult, Scenario } from "./loadgen.ts";
import { fmt, median, table } from "./stats.ts";
import { postgresBaseUrl, startBenchSystem } from "./system.ts";
import type { BenchSystem, StoreKind } from "./system.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import pg from "pg";

function envInt(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}
function envList(name: string, def: string[]): string[] {
  const v = process.env[name];
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : def;
}

const CONCURRENCY = envInt("BENCH_CONCURRENCY", 64);
const RUNS = Math.max(1, envInt("BENCH_RUNS", 3));
const WARMUP_MS = envInt("BENCH_WARMUP_MS", 1000);
const DURATION_MS = Math.max(100, envInt("BENCH_DURATION_MS", 5000));
const ACCOUNTS = Math.max(CONCURRENCY, envInt("BENCH_ACCOUNTS", 100_000));
const PROXIES = Math.max(CONCURRENCY, envInt("BENCH_PROXIES", 2000));
const SCENARIOS = envList("BENCH_SCENARIOS", ["get", "pair"]) as Scenario[];
const STORES = envList("BENCH_STORES", ["pglite", "postgres"]).filter((s) => s === "pglite" || (s === "postgres" && postgresBaseUrl())) as StoreKind[];
const BARE = process.env.BENCH_BARE !== "0";
const DIAG = process.env.BENCH_DIAG === "1";

const SCENARIO_LABEL: Record<Scenario, string> = { get: "GetAccount", pair: "Allocate+Release pair" };

const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);

/** One measured row: the median of RUNS runs. */
type Row = {
  scenario: string;
  store: string;
  reqPerSec: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  runs: number[];
  errors: number;
  firstError: string;
  serverCpu: number;
  dbCpu: number;
  clientCpu: number;
  hostCpu: number;
};

/** The load generator child process, with a request/response helper over IPC. */
class Loadgen {
  readonly child: ChildProcess;
  private waiting: ((m: { type: string } & Record<string, unknown>) => void) | undefined;
  private exited: Promise<void>;
  private constructor(child: ChildProcess) {
    this.child = child;
    child.on("message", (m: { type: string } & Record<string, unknown>) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(m);
    });
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }
  static async start(): Promise<Loadgen> {
    // No inherited --cpu-prof etc.: profile the server side only.
    const child = fork(fileURLToPath(new URL("./loadgen.ts", import.meta.url)), [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const lg = new Loadgen(child);
    const ready = await lg.next();
    if (ready.type !== "ready") throw new Error(`load generator said ${JSON.stringify(ready)}`);
    return lg;
  }
  private next(): Promise<{ type: string } & Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`load generator exited (${code})`));
      this.child.once("exit", onExit);
      this.waiting = (m) => {
        this.child.off("exit", onExit);
        resolve(m);
      };
    });
  }
  async send(msg: LoadgenMessage): Promise<{ type: string } & Record<string, unknown>> {
    const reply = this.next();
    this.child.send(msg);
    const m = await reply;
    if (m.type === "error") throw new Error(`load generator failed: ${String(m.message)}`);
    return m;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.disconnect();
      const t = setTimeout(() => this.child.kill("SIGKILL"), 3000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

/** Pids of the PostgreSQL backends serving a database (same host only), for CPU accounting. */
async function backendPids(url: string): Promise<number[]> {
  if (!url) return [];
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}

/** Runs one scenario RUNS times against a target and returns the median row. */
async function measure(lg: Loadgen, scenario: Scenario, store: string, target: { accountAddr: string; proxyAddr: string; dbUrl?: string }): Promise<Row> {
  const results: (RunResult & { serverCpu: number; dbCpu: number; hostCpu: number })[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const cmd: RunCommand = { type: "run", scenario, ...target, concurrency: CONCURRENCY, warmupMs: WARMUP_MS, durationMs: DURATION_MS };
    let a: CpuSnapshot | undefined;
    let b: CpuSnapshot | undefined;
    const pidsAt = setTimeout(async () => {
      const pids = await backendPids(target.dbUrl ?? "").catch(() => []);
      a = snapshot(pids);
    }, Math.max(0, WARMUP_MS - 150));
    const endAt = setTimeout(() => a && (b = snapshot([...a.pids.keys()])), WARMUP_MS + DURATION_MS);
    const r = (await lg.send(cmd)) as unknown as RunResult;
    clearTimeout(pidsAt);
    clearTimeout(endAt);
    const cpu = a && b ? cpuBetween(a, b) : { selfPct: Number.NaN, pidsPct: Number.NaN, hostPct: Number.NaN };
    results.push({ ...r, serverCpu: cpu.selfPct, dbCpu: target.dbUrl ? cpu.pidsPct : Number.NaN, hostCpu: cpu.hostPct });
    say(`${SCENARIO_LABEL[scenario]} on ${store}, run ${run}/${RUNS}: ${fmt((r.calls * 1000) / r.measuredMs)} req/s, p50 ${fmt(r.p50Ms, 2)} ms, p99 ${fmt(r.p99Ms, 2)} ms${r.errors ? `, ${r.errors} errors (${r.firstError})` : ""}`);
  }
  const reqs = results.map((r) => (r.calls * 1000) / r.measuredMs);
  return {
    scenario: SCENARIO_LABEL[scenario],
    store,
    reqPerSec: median(reqs),
    opsPerSec: median(results.map((r) => (r.ops * 1000) / r.measuredMs)),
    p50: median(results.map((r) => r.p50Ms)),
    p99: median(results.map((r) => r.p99Ms)),
    runs: reqs,
    errors: results.reduce((s, r) => s + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError ?? "",
    serverCpu: median(results.map((r) => r.serverCpu)),
    dbCpu: median(results.map((r) => r.dbCpu)),
    clientCpu: median(results.map((r) => (100 * r.clientCpuMs) / r.measuredMs)),
    hostCpu: median(results.map((r) => r.hostCpu)),
  };
}

const cleanups: (() => Promise<void>)[] = [];
async function runCleanups(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch((err) => say(`cleanup error: ${String(err)}`));
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    say(`${sig}: cleaning up`);
    void runCleanups().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const started = performance.now();
  const rows: Row[] = [];
  const diags: { store: string; results: DiagResult[] }[] = [];
  say(`concurrency ${CONCURRENCY}, ${RUNS} runs × (${WARMUP_MS} ms warm-up + ${DURATION_MS} ms), stores: ${STORES.join(", ") || "none"}, scenarios: ${SCENARIOS.join(", ")}`);
  if (!postgresBaseUrl()) say("PostgreSQL skipped: set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL to include it");

  let bare: Row | undefined;
  if (BARE) {
    const server = await startBareServer();
    const stopServer = () => server.stop();
    cleanups.push(stopServer);
    const lg = await Loadgen.start();
    const stopLg = () => lg.stop();
    cleanups.push(stopLg);
    const newId = createIdGenerator();
    await lg.send({ type: "ids", ids: Array.from({ length: ACCOUNTS }, () => newId()) });
    const addr = `127.0.0.1:${server.port}`;
    bare = await measure(lg, "get", "bare grpc-js", { accountAddr: addr, proxyAddr: addr });
    await runCleanups();
  }

  for (const kind of STORES) {
    say(`${kind}: starting the system and seeding ${ACCOUNTS} accounts + ${PROXIES} proxies`);
    const sys: BenchSystem = await startBenchSystem(kind, { accounts: ACCOUNTS, proxies: PROXIES, log: say });
    cleanups.push(() => sys.stop());
    say(`${kind}: seeded (proxies via AddProxies ${fmt(sys.seedMs.proxies)} ms, accounts via SQL ${fmt(sys.seedMs.accounts)} ms, vacuum analyze ${fmt(sys.seedMs.vacuum)} ms)`);
    const lg = await Loadgen.start();
    cleanups.push(() => lg.stop());
    await lg.send({ type: "ids", ids: sys.ids });
    for (const scenario of SCENARIOS) {
      rows.push(await measure(lg, scenario, kind, { accountAddr: sys.accountAddr, proxyAddr: sys.proxyAddr, dbUrl: sys.url }));
    }
    await lg.stop();
    if (DIAG) {
      say(`${kind}: in-process component ceilings`);
      diags.push({ store: kind, results: await diagnose(sys.db, sys.ids, sys.url, CONCURRENCY, 500, Math.min(DURATION_MS, 3000)) });
    }
    await runCleanups();
  }

  const baseReq = bare?.reqPerSec ?? Number.NaN;
  const header = ["scenario", "store", "req/s", "ops/s", "p50 ms", "p99 ms", "ratio to bare", `req/s of ${RUNS} runs`, "errors", "server CPU", "db CPU", "client CPU", "host CPU"];
  const line = (r: Row) => [
    r.scenario,
    r.store,
    fmt(r.reqPerSec),
    fmt(r.opsPerSec),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    Number.isFinite(baseReq) ? `${fmt((100 * r.reqPerSec) / baseReq, 1)}%` : "-",
    r.runs.map((x) => fmt(x)).join(" / "),
    String(r.errors),
    Number.isFinite(r.serverCpu) ? `${fmt(r.serverCpu)}%` : "-",
    Number.isFinite(r.dbCpu) ? `${fmt(r.dbCpu)}%` : "-",
    Number.isFinite(r.clientCpu) ? `${fmt(r.clientCpu)}%` : "-",
    Number.isFinite(r.hostCpu) ? `${fmt(r.hostCpu)}%` : "-",
  ];
  const out: string[] = [];
  out.push("");
  out.push(`Conveer gRPC benchmark: ${CONCURRENCY} calls in flight over loopback, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms measured, median of ${RUNS} runs; ${ACCOUNTS} accounts, ${PROXIES} proxies (capacity 1)`);
  out.push("");
  out.push(table([header, ...(bare ? [line(bare)] : []), ...rows.map(line)]));
  out.push("");
  out.push("req/s = gRPC calls completed per second (a pair is 2 calls); ops/s = GetAccount calls or Allocate+Release pairs per second;");
  out.push("p50/p99 = client-side latency of one op (a whole pair for the pair scenario); ratio to bare = req/s ÷ the bare grpc-js server's req/s;");
  out.push("server CPU = the bench process (Conveer's gRPC servers + store driver / PGlite), db CPU = PostgreSQL backends, client CPU = the load generator, in % of one core; host CPU = % of all cores.");
  for (const r of [...(bare ? [bare] : []), ...rows]) if (r.errors) out.push(`errors in ${r.scenario} on ${r.store}: ${r.errors}, first: ${r.firstError}`);
  if (diags.length) {
    out.push("");
    out.push(`In-process component ceilings (no gRPC; ${CONCURRENCY} in flight, 1 run):`);
    out.push(
      table([
        ["component", "store", "ops/s", "p50 ms", "p99 ms", "ratio to bare"],
        ...diags.flatMap((d) => d.results.map((r) => [r.name, d.store, fmt(r.opsPerSec), fmt(r.p50Ms, 2), fmt(r.p99Ms, 2), Number.isFinite(baseReq) ? `${fmt((100 * r.opsPerSec) / baseReq, 1)}%` : "-"])),
      ]),
    );
  }
  out.push("");
  const c = cpus();
  out.push(
    `machine: ${availableParallelism()} cores (${c[0]?.model ?? "unknown"}), ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM, node ${process.version}, ${process.platform}/${process.arch}; load generator and servers share the host; bench took ${fmt((performance.now() - started) / 1000, 1)} s`,
  );
  process.stdout.write(out.join("\n") + "\n");
}

try {
  await main();
} catch (err) {
  say(`failed: ${String((err as Error).stack ?? err)}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
// Nothing should be left running; exit explicitly so a stray idle HTTP/2 session never holds the run open.
process.exit(process.exitCode ?? 0);
