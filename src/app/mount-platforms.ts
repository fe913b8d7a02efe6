import type { Logger } from "pino";
import type { AccountService } from "../gen/conveer/v1/account_pb.js";
import type { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { SMSService } from "../gen/conveer/v1/sms_pb.js";
import type { VKService } from "../gen/conveer/v1/vk_pb.js";
import type { ServiceName } from "../config/config.ts";
import { PLATFORMS } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { createPlatforms } from "../platforms/platforms.ts";
import { platformService } from "../platforms/platform-service.ts";
import type { PlatformDriver } from "../platforms/driver.ts";
import { createSandboxDriver } from "../sandbox/index.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";
import { DESCRIPTORS } from "./descriptors.ts";

/**
 * The platform services this process serves (VK, Telegram, Mail, Max: one conveyor, each platform
 * bound to its configured driver), and the recovery of registrations a dead process left running.
 */
export function mountPlatforms(ctx: AppContext): Partial<Record<ServiceName, ServiceBinding>> {
  const { config } = ctx;
  const drivers: Partial<Record<Platform, PlatformDriver>> = {};
  for (const p of PLATFORMS) if (config.platforms.drivers[p] === "sandbox") drivers[p] = createSandboxDriver(p, { baseUrl: ctx.sandbox.url });
  const platforms = createPlatforms({
    db: ctx.db,
    drivers,
    newId: ctx.newId,
    log: ctx.log,
    metrics: ctx.metrics,
    peers: {
      accounts: ctx.peer<typeof AccountService>("account", "platform-service"),
      proxies: ctx.peer<typeof ProxyService>("proxy", "platform-service"),
      sms: ctx.peer<typeof SMSService>("sms", "platform-service"),
    },
    options: { codeTimeoutSeconds: config.platforms.codeTimeoutSeconds, leaseMs: config.platforms.registrationLeaseMs },
  });
  // Registrations left running by a process that died are cleaned up (number refunded, proxy freed).
  ctx.releasers.add("registration-recovery", every(config.platforms.registrationLeaseMs, () => platforms.recoverAbandoned(), ctx.log, "registration recovery"));
  const bindings: Partial<Record<ServiceName, ServiceBinding>> = {};
  for (const p of ctx.platforms) bindings[p] = platformService(DESCRIPTORS[p] as typeof VKService, p, platforms);
  return bindings;
}

/** Runs fn now and then every intervalMs (never overlapping) until the returned stop is called. */
function every(intervalMs: number, fn: () => Promise<unknown>, log: Logger, what: string): () => Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = false;
  const tick = () => {
    running = fn()
      .catch((err) => log.warn({ err: String(err) }, `${what} failed; retrying`))
      .finally(() => {
        running = undefined;
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };
  tick();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
