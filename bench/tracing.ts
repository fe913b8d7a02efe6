/**
 * GetAccount throughput with tracing off and on, beside a bare grpc-js server, in one run.
 *
 * - bare: plain grpc-js answering GetAccount (bench/bare-server.ts), the baseline;
 * - off: Conveer (account + proxy on PGlite, seeded) built while no tracer provider is registered,
 *   which is what a process without OTEL_* runs: the call chain, the store and the clients are
 *   built without any tracing step (the SDK is loaded later in this process, for "on", and
 *   changes nothing on this system's path);
 * - on: the same system built after the OpenTelemetry SDK was started from OTEL_* exactly as
 *   `conveer start` does (OTEL_TRACES_EXPORTER=otlp, http/protobuf) to an OTLP/HTTP receiver in
 *   this process that takes and drops every export; every call is sampled (a server span and its
 *   store query's span, batched).
 * All three in this process (like bench/main.ts), one load generator child per target
 * (bench/loadgen.ts, 64 calls in flight), rounds interleaved, each ratio the median of per-round
 * ratios, so the host's other load hits all alike.
 *
 * Knobs: BENCH_TRACES_SAMPLER_ARG=0.1 (the on system samples that share of calls; default: every call)
 * BENCH_CPU_PROF_DIR=/tmp/prof (a CPU profile of each measured window) BENCH_RUNS=3 BENCH_WARMUP_MS=1000 BENCH_DURATION_MS=5000 BENCH_CONCURRENCY=64 BENCH_TRACING_ACCOUNTS=20000
 */
import http from "node:http";
import type { Session } from "node:inspector/promises";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { startBareServer } from "./bare-server.ts";
import type { RunResult } from "./loadgen.ts";
import { Loadgen } from "./loadgen-process.ts";
import { PROFILE_DIR, startProfile, stopProfile } from "./profile.ts";
import { envInt, fmt, median, table } from "./stats.ts";
import { startBenchSystem } from "./system.ts";
import { loadConfig } from "../src/config/config.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { startTracingSdk } from "../src/telemetry/sdk.ts";
import { tracingEnabled } from "../src/telemetry/tracing.ts";

const RUNS = Math.max(1, envInt("BENCH_RUNS", 3, 0));
const WARMUP_MS = envInt("BENCH_WARMUP_MS", 1000, 0);
const DURATION_MS = Math.max(100, envInt("BENCH_DURATION_MS", 5000, 0));
const CONCURRENCY = envInt("BENCH_CONCURRENCY", 64, 1);
const ACCOUNTS = envInt("BENCH_TRACING_ACCOUNTS", 20_000);
const SAMPLER_ARG = process.env.BENCH_TRACES_SAMPLER_ARG ?? "";
const say = (s: string) => process.stderr.write(`[bench:tracing] ${s}\n`);

/** An OTLP/HTTP receiver that accepts and drops every export; counts the bytes. */
async function startSink(): Promise<{ url: string; bytes: () => number; close(): Promise<void> }> {
  let bytes = 0;
  const srv = http.createServer((req, res) => {
    req.on("data", (c: Buffer) => (bytes += c.length));
    req.on("end", () => res.writeHead(200, { "content-type": "application/x-protobuf" }).end());
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, bytes: () => bytes, close: () => new Promise((r) => srv.close(() => r())) };
}

async function main(): Promise<void> {
  for (const k of Object.keys(process.env)) if (k.startsWith("OTEL_")) delete process.env[k];
  const sink = await startSink();
  const bare = await startBareServer();
  say(`seeding the tracing-off system (${ACCOUNTS} accounts)`);
  const off = await startBenchSystem("pglite", { accounts: ACCOUNTS, proxies: 64, log: say });
  if (tracingEnabled()) throw new Error("a tracer provider is registered before the SDK was started");
  Object.assign(process.env, { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_SERVICE_NAME: "conveer-bench" });
  // BENCH_TRACES_SAMPLER_ARG=0.1: the "on" system samples that share of calls (parentbased_traceidratio), as an operator would.
  if (SAMPLER_ARG) Object.assign(process.env, { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: SAMPLER_ARG });
  const sdk = await startTracingSdk(loadConfig(), pino({ level: "warn" }));
  if (!sdk || !tracingEnabled()) throw new Error("the SDK did not start from OTEL_*");
  say(`seeding the tracing-on system (${ACCOUNTS} accounts)`);
  const on = await startBenchSystem("pglite", { accounts: ACCOUNTS, proxies: 64, log: say });
  const targets = [
    { name: "bare grpc-js (baseline)", addr: `127.0.0.1:${bare.port}`, ids: Array.from({ length: ACCOUNTS }, createIdGenerator()) },
    { name: "Conveer, tracing off (no OTEL_*)", addr: off.accountAddr, ids: off.ids },
    { name: SAMPLER_ARG ? `Conveer, tracing on (OTLP/HTTP, ${SAMPLER_ARG} sampled)` : "Conveer, tracing on (OTLP/HTTP)", addr: on.accountAddr, ids: on.ids },
  ].map((t) => ({ ...t, rates: [] as number[], cpuPerCall: [] as number[], p50: [] as number[], p99: [] as number[], errors: 0 }));
  const lgs: Loadgen[] = [];
  try {
    for (const t of targets) {
      const lg = await Loadgen.start();
      await lg.send({ type: "ids", ids: t.ids });
      lgs.push(lg);
    }
    for (let run = 0; run < RUNS; run++) {
      for (const [i, t] of targets.entries()) {
        // This process's CPU over the measured window: the servers' work per call, which a busy host
        // (other processes taking the cores) distorts far less than the throughput.
        let from: NodeJS.CpuUsage | undefined;
        let cpu: NodeJS.CpuUsage | undefined;
        let profiling: Promise<Session> | undefined;
        const a = setTimeout(() => {
          from = process.cpuUsage();
          if (PROFILE_DIR) profiling = startProfile();
        }, WARMUP_MS);
        const b = setTimeout(() => (cpu = from && process.cpuUsage(from)), WARMUP_MS + DURATION_MS);
        const r = (await lgs[i].send({ type: "run", scenario: "get", accountAddr: t.addr, proxyAddr: t.addr, concurrency: CONCURRENCY, warmupMs: WARMUP_MS, durationMs: DURATION_MS })) as unknown as RunResult;
        clearTimeout(a);
        clearTimeout(b);
        if (profiling) say(`CPU profile: ${await stopProfile(await profiling, `tracing-${["bare", "off", "on"][i]}-run${run + 1}`)}`);
        t.cpuPerCall.push(cpu ? (cpu.user + cpu.system) / r.calls : Number.NaN);
        t.rates.push((r.calls * 1000) / r.measuredMs);
        t.p50.push(r.p50Ms);
        t.p99.push(r.p99Ms);
        t.errors += r.errors;
        if (r.errors > 0) say(`${t.name}: ${r.errors} errors, first: ${r.firstError}`);
      }
      say(`round ${run + 1}/${RUNS}: ${targets.map((t) => `${t.name} ${fmt(t.rates[run])}/s`).join(", ")}`);
    }
  } finally {
    for (const lg of lgs) await lg.stop();
    await off.stop();
    await on.stop();
    await sdk.shutdown();
    await bare.stop();
    await sink.close();
  }
  const [b, o, n] = targets;
  const ratio = (x: typeof b, y: typeof b) => median(x.rates.map((r, i) => r / y.rates[i]));
  const cpuRatio = (x: typeof b, y: typeof b) => median(x.cpuPerCall.map((c, i) => c / y.cpuPerCall[i]));
  const rows = [
    ["GetAccount", "req/s", "p50 ms", "p99 ms", "÷ bare", "server CPU µs/call", "errors"],
    ...targets.map((t) => [t.name, fmt(median(t.rates)), fmt(median(t.p50), 2), fmt(median(t.p99), 2), fmt(ratio(t, b), 3), fmt(median(t.cpuPerCall), 1), String(t.errors)]),
  ];
  process.stdout.write(`\nGetAccount, ${CONCURRENCY} in flight, median of ${RUNS} runs of ${DURATION_MS} ms (PGlite)\n${table(rows)}\n`);
  process.stdout.write(`tracing on ÷ off: throughput ${fmt(ratio(n, o), 3)}, server CPU per call ${fmt(cpuRatio(n, o), 3)} (medians of per-round ratios; OTLP bytes exported: ${sink.bytes()})\n`);
  const cost = (1 - 1 / cpuRatio(n, o)) * 100;
  process.stdout.write(`goal: tracing on costs under 15 %: by CPU per call ${fmt(cost, 1)} % (${cost < 15 ? "met" : "NOT met"}), by throughput ${fmt((1 - ratio(n, o)) * 100, 1)} %\n`);
}

await main();
