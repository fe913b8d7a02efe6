import type { AccountService } from "../gen/conveer/v1/account_pb.js";
import type { VKService } from "../gen/conveer/v1/vk_pb.js";
import type { Config } from "../config/config.ts";
import { isPlatform } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import { createWarming } from "../warming/warming.ts";
import type { WarmingOptions } from "../warming/warming.ts";
import { warmingService } from "../warming/warming-service.ts";
import { anchoredClock } from "../warming/clock-anchor.ts";
import { loadScenarios } from "../warming/scenario.ts";
import type { AppContext } from "./app-context.ts";
import { warmingGauges } from "./store-gauges.ts";

/**
 * WarmingService: scenarios, tasks and (unless CONVEER_WARMING_WORKER=false) the worker that runs
 * their actions, stopped before the gRPC drain; its gauges and worker counters on /metrics.
 */
export async function mountWarming(ctx: AppContext): Promise<ServiceBinding> {
  const { config } = ctx;
  const clock = await anchoredClock(ctx.db, config.warming.timeScale, ctx.log, () => Date.now() + config.warming.clockOffsetMs);
  const warming = createWarming({
    db: ctx.db,
    newId: ctx.newId,
    log: ctx.log,
    metrics: ctx.metrics,
    clock,
    scenarios: await loadScenarios(config.warming.scenariosDir || undefined),
    options: warmingOptions(config),
    peers: {
      accounts: ctx.peer<typeof AccountService>("account", "warming"),
      platforms: (platform) => {
        if (!isPlatform(platform)) throw new AppError("FAILED_PRECONDITION", `no platform service for ${JSON.stringify(platform)}`);
        return ctx.peer<typeof VKService>(platform, "warming");
      },
    },
  });
  await warming.start();
  // In-flight actions end before the drain (SHUTDOWN_ORDER), within the same grace.
  ctx.releasers.add("warming", (graceMs) => warming.stop(graceMs));
  warmingGauges(ctx.metrics, ctx.db, warming, clock);
  return warmingService(warming);
}

/** The warming options the configuration sets. */
export function warmingOptions(config: Config): WarmingOptions {
  return {
    runWorker: config.warming.worker,
    batchSize: config.warming.batchSize,
    concurrency: config.warming.concurrency,
    leaseMs: config.warming.leaseMs,
    maxConsecutiveFailures: config.warming.maxConsecutiveFailures,
    eventRetentionMs: config.warming.eventRetentionDays * 86_400_000,
  };
}
