/**
 * SMS GetCode waiters at scale, on the domain (no gRPC): an in-memory PGlite store and the fake
 * in-memory provider. For each scenario it rents N numbers, starts N concurrent GetCode calls,
 * measures the heap held per waiting call (after GC), then has the provider deliver one code per
 * activation at a steady rate and measures, per code, the time from the provider's emit to the
 * waiting call's answer.
 *
 * Scenarios:
 * - local:  the process holding the waiters hears the provider and records the code (direct wake).
 * - notify: another instance ("replica") records the code; the waiters' instance is woken by
 *           LISTEN/NOTIFY and re-reads the activations in batches.
 * A "registry only" row gives the bare waiter registry's cost for comparison.
 *
 *   node --expose-gc bench/sms-waiters.ts
 *
 * Knobs (env): SMS_BENCH_WAITERS=10000  SMS_BENCH_RATE=250 (codes per second; above what the store
 * can record, the latency is queueing)  SMS_BENCH_SCENARIOS=local,notify
 */
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { pino } from "pino";
import { CodeWaiters } from "../src/sms/code-waiters.ts";
import { FakeSmsProvider } from "../src/sms/fake-sms-provider.ts";
import { createSms } from "../src/sms/sms.ts";
import type { Sms } from "../src/sms/sms.ts";
import type { GetCodeResponse } from "../src/gen/conveer/v1/sms_pb.js";
import { createIdGenerator } from "../src/store/ids.ts";
import { migrate } from "../src/store/migrate.ts";
import { openPglite } from "../src/store/pglite.ts";
import { envInt, fmt, quantile, table } from "./stats.ts";

const N = envInt("SMS_BENCH_WAITERS", 10_000);
const RATE = envInt("SMS_BENCH_RATE", 250);
const SCENARIOS = (process.env.SMS_BENCH_SCENARIOS ?? "local,notify").split(",").map((s) => s.trim()) as ("local" | "notify")[];

const gc: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
})();

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed;
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

type Row = { scenario: string; waiters: number; bytesPerWaiter: number; timers: number; rate: number; p50: number; p99: number; max: number; wallS: number; ok: number };

/** The bare registry: N waits with a deadline each and one timer. */
async function registryOnly(): Promise<Row> {
  const w = new CodeWaiters<string>();
  const keys = Array.from({ length: N }, (_, i) => `k${i}`.padEnd(24, "0"));
  const done: Promise<unknown>[] = new Array(N);
  const before = await settledHeap();
  const t = Date.now() + 600_000;
  for (let i = 0; i < N; i++) done[i] = w.wait(keys[i], t + i);
  const after = await settledHeap();
  const tm = timers();
  for (let i = 0; i < N; i++) w.wake(keys[i], "1");
  await Promise.all(done);
  return { scenario: "registry only", waiters: N, bytesPerWaiter: (after - before) / N, timers: tm, rate: NaN, p50: NaN, p99: NaN, max: NaN, wallS: NaN, ok: N };
}

async function scenario(name: "local" | "notify"): Promise<Row> {
  const log = pino({ level: "silent" });
  const db = await openPglite();
  await migrate(db);
  const newId = createIdGenerator();
  const fake = new FakeSmsProvider({ numbers: N, balance: N * 10, price: 1, ttlMs: 3_600_000 });
  // Waiters live on `waiting`; the code is recorded by `recording` (the same instance for "local").
  const waiting: Sms = createSms({ db, providers: [name === "local" ? fake : fake.withoutMessages()], newId, log, options: { sweepIntervalMs: 60_000 } });
  const recording: Sms = name === "local" ? waiting : createSms({ db, providers: [fake], newId, log, options: { sweepIntervalMs: 60_000 } });
  await waiting.start();
  if (recording !== waiting) await recording.start();
  try {
    const ids: string[] = new Array(N);
    const refs: string[] = new Array(N);
    for (let i = 0; i < N; i += 64) {
      await Promise.all(
        Array.from({ length: Math.min(64, N - i) }, async (_, j) => {
          const a = await waiting.getNumber({ service: "vk", country: "ru", operator: "" });
          ids[i + j] = a.id;
          refs[i + j] = fake.refOf(a.phone)!;
        }),
      );
    }
    const emitted = new Float64Array(N);
    const answered = new Float64Array(N);
    const results: Promise<GetCodeResponse>[] = new Array(N);
    let ok = 0;

    const before = await settledHeap();
    for (let i = 0; i < N; i++) {
      results[i] = waiting.getCode(ids[i], 600).then((r) => {
        answered[i] = performance.now();
        if (r.success) ok++;
        return r;
      });
    }
    while (waiting.stats().waiters < N) await sleep(20);
    await sleep(300); // the post-registration re-checks settle
    const after = await settledHeap();
    const tm = timers();

    // Deliver one code per activation at a steady rate, in 10 ms slices.
    const started = performance.now();
    let next = 0;
    while (next < N) {
      const due = Math.min(N, Math.floor(((performance.now() - started) / 1000) * RATE) + 1);
      for (; next < due; next++) {
        emitted[next] = performance.now();
        fake.deliver(refs[next], String(100000 + (next % 900000)));
      }
      await sleep(10);
    }
    await Promise.all(results);
    const wallS = (performance.now() - started) / 1000;
    const lat = new Float64Array(N);
    for (let i = 0; i < N; i++) lat[i] = answered[i] - emitted[i];
    return {
      scenario: name === "local" ? "local (provider → record → wake)" : "notify (other replica → NOTIFY → batched read → wake)",
      waiters: N,
      bytesPerWaiter: (after - before) / N,
      timers: tm,
      rate: N / wallS,
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
      max: quantile(lat, 1),
      wallS,
      ok,
    };
  } finally {
    if (recording !== waiting) await recording.stop();
    await waiting.stop();
    await db.close();
  }
}

const rows: Row[] = [await registryOnly()];
for (const s of SCENARIOS) rows.push(await scenario(s));

console.log(`\nSMS GetCode waiters: ${N} concurrent, codes offered at ${RATE}/s, PGlite in memory, node ${process.version}\n`);
console.log(
  table([
    ["scenario", "waiters", "heap B/waiter", "timers", "codes/s", "p50 ms", "p99 ms", "max ms", "answered ok"],
    ...rows.map((r) => [r.scenario, String(r.waiters), fmt(r.bytesPerWaiter), String(r.timers), fmt(r.rate), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.max, 2), String(r.ok)]),
  ]),
);
console.log("\ntimers = active Timeout handles in the whole process while all waiters wait: the registry's one, plus one sweeper per SMS instance and the store's.");
