/**
 * Registrations per second through the whole conveyor (sandbox at zero latency, codes sent at
 * once), ExecuteAction throughput, and warming end to end (the worker runs every action through
 * the VK service, the account's proxy and the sandbox), beside the bare grpc-js server measured
 * with the same client in the same run.
 * Run: node bench/platforms.ts   (BENCH_REGISTRATIONS=200, BENCH_DURATION_MS=5000, BENCH_WARMING_ACTIONS=20 per task)
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
import { envInt } from "./stats.ts";

const REGISTRATIONS = envInt("BENCH_REGISTRATIONS", 200);
const DURATION_MS = envInt("BENCH_DURATION_MS", 5000);
const WARMING_ACTIONS = envInt("BENCH_WARMING_ACTIONS", 20);
const IN_FLIGHT = 64;

/** Runs `op` from `n` workers for `ms`; returns ops/s and latency percentiles. */
async function load(n: number, ms: number, op: () => Promise<unknown>): Promise<{ perSec: number; p50: number; p99: number }> {
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
  return { perSec: (lat.length / ms) * 1000, p50: lat[Math.floor(lat.length / 2)] ?? 0, p99: lat[Math.floor(lat.length * 0.99)] ?? 0 };
}

const bare = await startBareServer();
const bareClient = remoteClient(AccountService, { addr: `127.0.0.1:${bare.port}` });
const baseline = await load(IN_FLIGHT, DURATION_MS, () => bareClient.getAccount({ accountId: "0123456789abcdef01234567" }));

const kind = process.env.CONVEER_TEST_DATABASE_URL ? "postgres" : "pglite";
// Warming: a scenario day per real second, one day of WARMING_ACTIONS actions over the whole day,
// so a task's actions are all due within a second of its start.
const scenarios = await mkdtemp(join(tmpdir(), "conveer-bench-scenarios-"));
await writeFile(join(scenarios, "burst.json"), JSON.stringify({ id: "burst", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: WARMING_ACTIONS } }] }));
const sys = await startTestSystem(kind, { env: { CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000", CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_LOG_LEVEL: "silent", CONVEER_TIME_SCALE: "86400", CONVEER_SCENARIOS_DIR: scenarios } });
const proxy = await startHttpConnectProxy();
try {
  await fetch(`${sys.app.sandboxUrl}/v1/admin/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ codeDelayMs: 0, latency: { minMs: 0, maxMs: 0 } }) });
  await fetch(`${sys.app.sandboxUrl}/v1/admin/rate-limit`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ burst: 1e9, perSecond: 1e9 }) });
  await fetch(`${sys.app.sandboxUrl}/v1/sms/admin/top-up`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ amount: REGISTRATIONS * 20 }) });
  await sys.proxies.addProxies({ proxies: [{ url: `http://127.0.0.1:${proxy.port}`, capacity: 10_000 }] });
  const vk = remoteClient(VKService, { addr: sys.addr("vk") });

  let next = 0;
  const ids: string[] = [];
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
  const regPerSec = (ids.length / (performance.now() - t0)) * 1000;

  let i = 0;
  const actions = await load(IN_FLIGHT, DURATION_MS, () => vk.executeAction({ accountId: ids[i++ % ids.length], actionType: ActionType.VIEW_PROFILE }));

  // Warming end to end: a task per registered account, every action due at once.
  const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
  const recorded = async () => Number(/^conveer_warming_worker_actions_total\{state="recorded"\} (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${sys.app.httpPort}/metrics`)).text())?.[1] ?? 0);
  const recorded0 = await recorded();
  const w0 = performance.now();
  const tasks = await Promise.all(ids.map((accountId) => warming.startWarming({ accountId, scenarioId: "burst" })));
  for (;;) {
    const states = await Promise.all(tasks.map((t) => warming.getWarmingStatus({ taskId: t.id })));
    if (states.every((t) => t.status !== WarmingStatus.RUNNING)) {
      const failed = states.filter((t) => t.status !== WarmingStatus.COMPLETED || t.actionsFailed > 0);
      if (failed.length > 0) throw new Error(`${failed.length} warming tasks did not complete cleanly, e.g. ${failed[0].error}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const warmed = (await recorded()) - recorded0;
  const warmPerSec = (warmed / (performance.now() - w0)) * 1000;

  const f = (n: number) => n.toFixed(n < 10 ? 2 : 0);
  console.log(`\nplatform benchmark on ${kind}, ${availableParallelism()} cores, node ${process.version}; ${IN_FLIGHT} in flight for throughput, 16 registrations in flight\n`);
  console.log("scenario                          | per s | p50 ms | p99 ms | ratio to bare");
  console.log(`bare grpc-js GetAccount (baseline) | ${f(baseline.perSec).padStart(5)} | ${f(baseline.p50).padStart(6)} | ${f(baseline.p99).padStart(6)} | 100%`);
  console.log(`Register (whole conveyor)         | ${f(regPerSec).padStart(5)} |      - |      - | ${((regPerSec / baseline.perSec) * 100).toFixed(2)}%`);
  console.log(`ExecuteAction VIEW_PROFILE        | ${f(actions.perSec).padStart(5)} | ${f(actions.p50).padStart(6)} | ${f(actions.p99).padStart(6)} | ${((actions.perSec / baseline.perSec) * 100).toFixed(1)}%`);
  console.log(`Warming, worker → VK → sandbox   | ${f(warmPerSec).padStart(5)} |      - |      - | ${((warmPerSec / baseline.perSec) * 100).toFixed(1)}%`);
  console.log(`(${ids.length} registrations; ${tasks.length} warming tasks, ${warmed} actions; requests through the proxy: ${proxy.requests}, tunnels opened: ${proxy.connections})`);
} finally {
  await proxy.close();
  await sys.stop();
  await bare.stop();
  await rm(scenarios, { recursive: true, force: true });
}
