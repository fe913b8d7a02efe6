/**
 * `npm run bench`: Conveer's gRPC throughput and latency against a bare grpc-js server.
 *
 * 1. A bare baseline: plain grpc-js answering GetAccount with a fixed Account, protobuf-es
 *    encoded on every call (bench/bare-server.ts).
 * 2. The real system (startApp: account + proxy, silent log) on PGlite (on disk in a temporary
 *    data directory), and on PostgreSQL when CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL is
 *    set (a fresh database, dropped after), seeded with 100,000 accounts (bulk SQL, secrets sealed
 *    by the real vault) and 2,000 proxies of capacity 1 (the real AddProxies RPC) (bench/system.ts).
 * 3. One load generator child process per target (bench/loadgen.ts: the grpc-js client with
 *    protobuf-es, the same for every target) keeps 64 calls in flight: GetAccount on random
 *    seeded ids, and AllocateProxy + ReleaseProxy pairs on random accounts. Each measurement:
 *    1 s warm-up + 5 s measured, 3 runs, the median reported. Everything is started and seeded
 *    first, then the runs are interleaved round by round (bare, PGlite, PostgreSQL), and each
 *    ratio is the median of per-round ratios, so drift in the host's other load hits all alike.
 * 4. The CPU each party used in the window (this process = the servers, the PostgreSQL backends,
 *    the load generator, everything else) is reported too, as % of a core and µs per call.
 *
 * Knobs (env): BENCH_STORES=pglite,postgres  BENCH_SCENARIOS=get,pair  BENCH_BARE=0
 * BENCH_RUNS=3  BENCH_WARMUP_MS=1000  BENCH_DURATION_MS=5000  BENCH_CONCURRENCY=64
 * BENCH_ACCOUNTS=100000  BENCH_PROXIES=2000
 * BENCH_DIAG=1: also Conveer's transport over an in-memory accounts stub (bench/stub-server.ts)
 *   and in-process store ceilings (bench/diag.ts: store query, accounts.get, raw pg unnamed vs
 *   prepared, SELECT 1).
 * BENCH_CPU_PROF_DIR=/tmp/prof: CPU-profile the servers' side of every measured window; read a
 *   profile with `node bench/profile-summary.ts FILE.cpuprofile`.
 */
import type { Session } from "node:inspector/promises";
import { availableParallelism, cpus, totalmem } from "node:os";
import { startBareServer } from "./bare-server.ts";
import { startStubServer } from "./stub-server.ts";
import { cpuBetween, snapshot } from "./cpu.ts";
import { PROFILE_DIR, startProfile, stopProfile } from "./profile.ts";
import type { CpuSnapshot } from "./cpu.ts";
import { backendPids, diagnose } from "./diag.ts";
import type { DiagResult } from "./diag.ts";
import type { RunCommand, RunResult, Scenario } from "./loadgen.ts";
import { Loadgen } from "./loadgen-process.ts";
import { envInt, fmt, median, table } from "./stats.ts";
import { postgresBaseUrl, startBenchSystem } from "./system.ts";
import type { BenchSystem, StoreKind } from "./system.ts";
import { createIdGenerator } from "../src/store/ids.ts";

function envList(name: string, def: string[]): string[] {
  const v = process.env[name];
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : def;
}

const CONCURRENCY = envInt("BENCH_CONCURRENCY", 64, 0);
const RUNS = Math.max(1, envInt("BENCH_RUNS", 3, 0));
const WARMUP_MS = envInt("BENCH_WARMUP_MS", 1000, 0);
const DURATION_MS = Math.max(100, envInt("BENCH_DURATION_MS", 5000, 0));
const ACCOUNTS = Math.max(CONCURRENCY, envInt("BENCH_ACCOUNTS", 100_000, 0));
const PROXIES = Math.max(CONCURRENCY, envInt("BENCH_PROXIES", 2000, 0));
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
  /** Median over rounds of req/s ÷ the bare server's req/s in the same round. */
  ratio: number;
  runs: number[];
  errors: number;
  firstError: string;
  serverCpu: number;
  dbCpu: number;
  clientCpu: number;
  hostCpu: number;
};

/** One measured run, with the CPU each party used in its window. */
type RunSample = RunResult & { reqPerSec: number; serverCpu: number; dbCpu: number; hostCpu: number };

/** Runs one scenario once against a target. */
async function measureOnce(lg: Loadgen, scenario: Scenario, store: string, run: number, target: { accountAddr: string; proxyAddr: string; dbUrl?: string }): Promise<RunSample> {
  const cmd: RunCommand = { type: "run", scenario, accountAddr: target.accountAddr, proxyAddr: target.proxyAddr, concurrency: CONCURRENCY, warmupMs: WARMUP_MS, durationMs: DURATION_MS };
  let a: CpuSnapshot | undefined;
  let b: CpuSnapshot | undefined;
  let profiling: Promise<Session> | undefined;
  const startAt = setTimeout(async () => {
    const pids = await backendPids(target.dbUrl ?? "").catch(() => []);
    a = snapshot(pids);
    if (PROFILE_DIR) profiling = startProfile();
  }, Math.max(0, WARMUP_MS - 150));
  const endAt = setTimeout(() => a && (b = snapshot([...a.pids.keys()])), WARMUP_MS + DURATION_MS);
  const r = (await lg.send(cmd)) as unknown as RunResult;
  clearTimeout(startAt);
  clearTimeout(endAt);
  if (profiling) {
    const file = await stopProfile(await profiling, `${store}-${scenario}-run${run}`);
    say(`CPU profile of the server side: ${file}`);
  }
  const cpu = a && b ? cpuBetween(a, b) : { selfPct: Number.NaN, pidsPct: Number.NaN, hostPct: Number.NaN };
  const reqPerSec = (r.calls * 1000) / r.measuredMs;
  say(`${SCENARIO_LABEL[scenario]} on ${store}, run ${run}/${RUNS}: ${fmt(reqPerSec)} req/s, p50 ${fmt(r.p50Ms, 2)} ms, p99 ${fmt(r.p99Ms, 2)} ms${r.errors ? `, ${r.errors} errors (${r.firstError})` : ""}`);
  return { ...r, reqPerSec, serverCpu: cpu.selfPct, dbCpu: target.dbUrl ? cpu.pidsPct : Number.NaN, hostCpu: cpu.hostPct };
}

/** The median row of a measurement's runs; the ratio is the median of per-round ratios to the bare run of the same round. */
function summarize(scenario: Scenario, store: string, runs: RunSample[], bareRuns: RunSample[] | undefined): Row {
  const ratios = bareRuns ? runs.map((r, i) => r.reqPerSec / bareRuns[i].reqPerSec) : [];
  return {
    scenario: SCENARIO_LABEL[scenario],
    store,
    reqPerSec: median(runs.map((r) => r.reqPerSec)),
    opsPerSec: median(runs.map((r) => (r.ops * 1000) / r.measuredMs)),
    p50: median(runs.map((r) => r.p50Ms)),
    p99: median(runs.map((r) => r.p99Ms)),
    ratio: ratios.length ? median(ratios) : Number.NaN,
    runs: runs.map((r) => r.reqPerSec),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    firstError: runs.find((r) => r.firstError)?.firstError ?? "",
    serverCpu: median(runs.map((r) => r.serverCpu)),
    dbCpu: median(runs.map((r) => r.dbCpu)),
    clientCpu: median(runs.map((r) => (100 * r.clientCpuMs) / r.measuredMs)),
    hostCpu: median(runs.map((r) => r.hostCpu)),
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

/** Something to measure: the bare server or one store's system, with its own load generator. */
type Target = { store: string; lg: Loadgen; scenarios: Scenario[]; accountAddr: string; proxyAddr: string; dbUrl?: string; sys?: BenchSystem; stub?: boolean; samples: Map<Scenario, RunSample[]> };

async function main(): Promise<void> {
  const started = performance.now();
  const diags: { store: string; results: DiagResult[] }[] = [];
  say(`concurrency ${CONCURRENCY}, ${RUNS} runs × (${WARMUP_MS} ms warm-up + ${DURATION_MS} ms), stores: ${STORES.join(", ") || "none"}, scenarios: ${SCENARIOS.join(", ")}`);
  if (!postgresBaseUrl()) say("PostgreSQL skipped: set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL to include it");

  // Everything is started and seeded first; then the runs are interleaved round by round (bare,
  // then each store), so a slow drift in what else the host is doing hits every target alike.
  const targets: Target[] = [];
  /** A GetAccount-only target on a storeless server, with its own load generator fed made-up ids. */
  const storeless = async (server: { port: number; stop(): Promise<void> }, store: string, stub: boolean): Promise<Target> => {
    cleanups.push(() => server.stop());
    const lg = await Loadgen.start();
    cleanups.push(() => lg.stop());
    const newId = createIdGenerator();
    await lg.send({ type: "ids", ids: Array.from({ length: ACCOUNTS }, () => newId()) });
    const addr = `127.0.0.1:${server.port}`;
    return { store, lg, scenarios: ["get"], accountAddr: addr, proxyAddr: addr, stub, samples: new Map() };
  };
  if (BARE) targets.push(await storeless(await startBareServer(), "bare grpc-js", false));
  if (DIAG) targets.push(await storeless(await startStubServer(), "no store (diag)", true));
  for (const kind of STORES) {
    say(`${kind}: starting the system and seeding ${ACCOUNTS} accounts + ${PROXIES} proxies`);
    const sys: BenchSystem = await startBenchSystem(kind, { accounts: ACCOUNTS, proxies: PROXIES, log: say });
    cleanups.push(() => sys.stop());
    say(`${kind}: seeded (proxies via AddProxies ${fmt(sys.seedMs.proxies)} ms, accounts via SQL ${fmt(sys.seedMs.accounts)} ms, vacuum analyze ${fmt(sys.seedMs.vacuum)} ms)`);
    const lg = await Loadgen.start();
    cleanups.push(() => lg.stop());
    await lg.send({ type: "ids", ids: sys.ids });
    targets.push({ store: kind, lg, scenarios: SCENARIOS, accountAddr: sys.accountAddr, proxyAddr: sys.proxyAddr, dbUrl: sys.url, sys, samples: new Map() });
  }

  for (let run = 1; run <= RUNS; run++) {
    for (const t of targets) {
      for (const scenario of t.scenarios) {
        const s = await measureOnce(t.lg, scenario, t.store, run, t);
        t.samples.set(scenario, [...(t.samples.get(scenario) ?? []), s]);
      }
    }
  }
  for (const t of targets) await t.lg.stop();

  if (DIAG) {
    for (const t of targets) {
      if (!t.sys) continue;
      say(`${t.store}: in-process component ceilings`);
      diags.push({ store: t.store, results: await diagnose(t.sys.db, t.sys.ids, t.sys.url, CONCURRENCY, 500, Math.min(DURATION_MS, 3000)) });
    }
  }

  const bareRuns = BARE ? targets[0].samples.get("get") : undefined;
  const bare = bareRuns ? summarize("get", targets[0].store, bareRuns, bareRuns) : undefined;
  const rows: Row[] = targets.filter((t) => t.sys || t.stub).flatMap((t) => t.scenarios.map((sc) => summarize(sc, t.store, t.samples.get(sc)!, bareRuns)));

  const baseReq = bare?.reqPerSec ?? Number.NaN;
  const header = ["scenario", "store", "req/s", "ops/s", "p50 ms", "p99 ms", "ratio to bare", `req/s of ${RUNS} runs`, "errors", "server CPU", "db CPU", "client CPU", "other CPU"];
  const line = (r: Row) => [
    r.scenario,
    r.store,
    fmt(r.reqPerSec),
    fmt(r.opsPerSec),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    Number.isFinite(r.ratio) ? `${fmt(100 * r.ratio, 1)}%` : "-",
    r.runs.map((x) => fmt(x)).join(" / "),
    String(r.errors),
    Number.isFinite(r.serverCpu) ? `${fmt(r.serverCpu)}%` : "-",
    Number.isFinite(r.dbCpu) ? `${fmt(r.dbCpu)}%` : "-",
    Number.isFinite(r.clientCpu) ? `${fmt(r.clientCpu)}%` : "-",
    Number.isFinite(r.hostCpu) ? `${fmt(Math.max(0, (r.hostCpu * availableParallelism()) - r.serverCpu - (Number.isFinite(r.dbCpu) ? r.dbCpu : 0) - r.clientCpu))}%` : "-",
  ];
  const out: string[] = [];
  out.push("");
  out.push(`Conveer gRPC benchmark: ${CONCURRENCY} calls in flight over loopback, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms measured, median of ${RUNS} runs; ${ACCOUNTS} accounts, ${PROXIES} proxies (capacity 1)`);
  out.push("");
  out.push(table([header, ...(bare ? [line(bare)] : []), ...rows.map(line)]));
  out.push("");
  out.push("req/s = gRPC calls completed per second (a pair is 2 calls); ops/s = GetAccount calls or Allocate+Release pairs per second;");
  out.push("p50/p99 = client-side latency of one op (a whole pair for the pair scenario); ratio to bare = median over rounds of req/s ÷ the bare server's req/s in the same round;");
  out.push("server CPU = the bench process (Conveer's gRPC servers + store driver / PGlite), db CPU = PostgreSQL backends, client CPU = the load generator;");
  out.push("other CPU = everything else on the host in the window (other processes; PostgreSQL's own background work), all in % of one core.");
  const perReq = (pct: number, r: Row) => (Number.isFinite(pct) && r.reqPerSec > 0 ? fmt((pct / 100) * (1e6 / r.reqPerSec)) : "-");
  out.push("");
  out.push("CPU time per gRPC call (from the CPU columns; less sensitive to a busy host than req/s):");
  out.push(
    table([
      ["scenario", "store", "server µs/req", "db µs/req", "client µs/req"],
      ...[...(bare ? [bare] : []), ...rows].map((r) => [r.scenario, r.store, perReq(r.serverCpu, r), perReq(r.dbCpu, r), perReq(r.clientCpu, r)]),
    ]),
  );
  for (const r of [...(bare ? [bare] : []), ...rows]) if (r.errors) out.push(`errors in ${r.scenario} on ${r.store}: ${r.errors}, first: ${r.firstError}`);
  if (diags.length) {
    out.push("");
    out.push(`In-process component ceilings (no gRPC; ${CONCURRENCY} in flight, 1 run):`);
    out.push(
      table([
        ["component", "store", "ops/s", "p50 ms", "p99 ms", "ratio to bare", "node µs/op", "db µs/op"],
        ...diags.flatMap((d) =>
          d.results.map((r) => [r.name, d.store, fmt(r.opsPerSec), fmt(r.p50Ms, 2), fmt(r.p99Ms, 2), Number.isFinite(baseReq) ? `${fmt((100 * r.opsPerSec) / baseReq, 1)}%` : "-", fmt(r.nodeUsPerOp), fmt(r.dbUsPerOp)]),
        ),
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
