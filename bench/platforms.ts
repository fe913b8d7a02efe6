/**
 * Registrations per second through the whole conveyor (sandbox at zero latency, codes sent at
 * once) and ExecuteAction throughput, beside the bare grpc-js server measured with the same client
 * in the same run. Run: node bench/platforms.ts   (BENCH_REGISTRATIONS, BENCH_DURATION_MS)
 */
import { availableParallelism } from "node:os";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { ActionType } from "../src/gen/conveer/v1/platform_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { startHttpConnectProxy } from "../test/support/local-proxies.ts";
import { startTestSystem } from "../test/support/system.ts";
import { startBareServer } from "./bare-server.ts";

const REGISTRATIONS = Number(process.env.BENCH_REGISTRATIONS ?? 200);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
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
const sys = await startTestSystem(kind, { env: { CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000", CONVEER_LOG_LEVEL: "silent" } });
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

  const f = (n: number) => n.toFixed(n < 10 ? 2 : 0);
  console.log(`\nplatform benchmark on ${kind}, ${availableParallelism()} cores, node ${process.version}; ${IN_FLIGHT} in flight for throughput, 16 registrations in flight\n`);
  console.log("scenario                          | per s | p50 ms | p99 ms | ratio to bare");
  console.log(`bare grpc-js GetAccount (baseline) | ${f(baseline.perSec).padStart(5)} | ${f(baseline.p50).padStart(6)} | ${f(baseline.p99).padStart(6)} | 100%`);
  console.log(`Register (whole conveyor)         | ${f(regPerSec).padStart(5)} |      - |      - | ${((regPerSec / baseline.perSec) * 100).toFixed(2)}%`);
  console.log(`ExecuteAction VIEW_PROFILE        | ${f(actions.perSec).padStart(5)} | ${f(actions.p50).padStart(6)} | ${f(actions.p99).padStart(6)} | ${((actions.perSec / baseline.perSec) * 100).toFixed(1)}%`);
  console.log(`(${ids.length} registrations; proxy tunnels opened: ${proxy.connections})`);
} finally {
  await proxy.close();
  await sys.stop();
  await bare.stop();
}
