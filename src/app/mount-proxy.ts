import type { AccountService } from "../gen/conveer/v1/account_pb.js";
import type { Config } from "../config/config.ts";
import { createProxies } from "../proxies/proxies.ts";
import type { ProxyPoolOptions } from "../proxies/proxies.ts";
import { proxyService } from "../proxies/proxy-service.ts";
import { createHealthChecker } from "../proxies/health-checker.ts";
import { resolveProxyTargets } from "../proxies/address-policy.ts";
import type { ProxyTargets } from "../proxies/address-policy.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";
import { proxyGauges } from "./store-gauges.ts";

/**
 * ProxyService: the pool (its address policy and check targets resolved from the configuration
 * and the sandbox's address), the health checker that runs until stop, and the pool gauges.
 */
export async function mountProxy(ctx: AppContext): Promise<ServiceBinding> {
  const { config, log } = ctx;
  const targets = await resolveProxyTargets({ ...config.proxy, databaseUrl: config.databaseUrl, drivers: config.platforms.drivers, sandboxUrl: ctx.sandbox.url });
  log.info({ check_target: targets.checkTarget, allow_private: config.proxy.allowPrivate }, "proxy health checks target %s", targets.checkTarget);
  const proxies = createProxies({ db: ctx.db, vault: ctx.vault, newId: ctx.newId, accounts: ctx.peer<typeof AccountService>("account", "proxy-service"), log, options: proxyOptions(config, targets) });
  const checker = createHealthChecker({ db: ctx.db, proxies, log, intervalMs: config.proxy.checkIntervalMs, target: targets.checkTarget });
  checker.start();
  ctx.releasers.add("proxy-health-checks", () => checker.stop());
  proxyGauges(ctx.metrics, ctx.db);
  return proxyService(proxies);
}

/** The pool's options: the configuration with the resolved targets and policy. */
export function proxyOptions(config: Config, targets: ProxyTargets): ProxyPoolOptions {
  return {
    leaseMs: config.proxy.leaseMs,
    checkTarget: targets.checkTarget,
    allowedTargets: targets.allowedTargets,
    policy: targets.policy,
    checkTimeoutMs: config.proxy.checkTimeoutMs,
    failureThreshold: config.proxy.failureThreshold,
  };
}
