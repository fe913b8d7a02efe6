/**
 * A Conveer system in a process of its own for bench/tracing.ts (a tracer provider is process-wide):
 * starts the OpenTelemetry SDK exactly as `conveer start` does (only when OTEL_* asks for it), then
 * the seeded bench system (account + proxy on PGlite). Speaks the Loadgen IPC: "ready" once up,
 * "info" → its addresses and account ids; it stops when the parent disconnects.
 */
import { pino } from "pino";
import { loadConfig } from "../src/config/config.ts";
import { startTracingSdk } from "../src/telemetry/sdk.ts";
import { envInt } from "./stats.ts";
import { startBenchSystem } from "./system.ts";

const config = loadConfig({ ...process.env, CONVEER_LOG_LEVEL: "silent" });
const sdk = await startTracingSdk(config, pino({ level: "warn" }));
const sys = await startBenchSystem("pglite", { accounts: envInt("BENCH_TRACING_ACCOUNTS", 20_000), proxies: 64, log: (s) => process.stderr.write(`[target] ${s}\n`) });
process.on("message", (m: { type: string }) => {
  if (m.type === "info") process.send!({ type: "info", accountAddr: sys.accountAddr, proxyAddr: sys.proxyAddr, ids: sys.ids, sdkLoaded: sdk !== undefined });
});
process.on("disconnect", () => {
  void sys
    .stop()
    .then(() => sdk?.shutdown())
    .finally(() => process.exit(0));
});
process.send!({ type: "ready" });
