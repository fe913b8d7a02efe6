import { createLogger } from "./server/logger.ts";
import type { Logger } from "pino";
import { SERVICE_NAMES } from "./config/config.ts";
import type { Config, ServiceName } from "./config/config.ts";
import { loadTls } from "./server/listen.ts";
import type { Db } from "./store/db.ts";
import { createAppContext } from "./app/app-context.ts";
import { mountAccount } from "./app/mount-account.ts";
import { mountAdmin } from "./app/mount-admin.ts";
import { mountGrpc } from "./app/mount-grpc.ts";
import { mountHttp } from "./app/mount-http.ts";
import { mountPlatforms } from "./app/mount-platforms.ts";
import { mountProxy } from "./app/mount-proxy.ts";
import { mountSms } from "./app/mount-sms.ts";
import { mountWarming } from "./app/mount-warming.ts";
import { createReleasers } from "./app/releasers.ts";
import { traceMixin, tracingEnabled } from "./telemetry/tracing.ts";

/** Options of a running system. */
export type AppOptions = {
  config: Config;
  services?: readonly ServiceName[];
  log?: Logger;
  /** An already migrated store to use instead of the configured one (tests); closed on stop. */
  db?: Db;
};

/** A started system: its bound ports, and stop(). */
export type App = {
  ports: Partial<Record<ServiceName, number>>;
  httpPort: number;
  log: Logger;
  /** The sandbox platform's base URL (in-process or CONVEER_SANDBOX_URL); "" when none is used. */
  sandboxUrl: string;
  /** Drains in-flight calls (up to graceMs), stops background work, closes the store. */
  stop(graceMs?: number): Promise<void>;
};

/**
 * Starts Conveer: the store (migrated), the vault, the services asked for (each on its own port
 * with health and reflection), background work, and the HTTP port. How services reach each other
 * (a direct call in this process, gRPC to `*_SERVICE_GRPC_ADDR` otherwise) is decided in one
 * place: src/app/peers.ts.
 */
export async function startApp(opts: AppOptions): Promise<App> {
  const { config } = opts;
  const services = opts.services ?? SERVICE_NAMES;
  const log = opts.log ?? createLogger(config, { mixin: tracingEnabled() ? traceMixin : undefined });
  const releasers = createReleasers(log);
  try {
    const ctx = await createAppContext(config, services, log, opts.db, releasers);
    // Each service this process serves is mounted (src/app/mount-*.ts): it builds its domain,
    // registers what it holds for release, and answers its binding. Peers resolve at their first
    // call, so no mount needs another mounted before it; this order only lets background work that
    // starts at once (registration recovery, the warming worker) find its local peers ready.
    // stop() follows SHUTDOWN_ORDER (src/app/releasers.ts), whatever the order here.
    const { bindings } = ctx;
    if (services.includes("account")) bindings.account = mountAccount(ctx);
    if (services.includes("proxy")) bindings.proxy = await mountProxy(ctx);
    if (services.includes("sms")) bindings.sms = await mountSms(ctx);
    if (ctx.platforms.length > 0) Object.assign(bindings, mountPlatforms(ctx));
    if (services.includes("warming")) bindings.warming = await mountWarming(ctx);
    const tls = loadTls(config.tlsCert, config.tlsKey, config.tlsClientCa);
    const ports = await mountGrpc(ctx, tls);
    const httpPort = await mountHttp(ctx, tls, [mountAdmin(ctx)]);
    log.info({ ports, http: httpPort, store: ctx.db.kind, services }, "conveer started");
    return { ports, httpPort, log, sandboxUrl: ctx.sandbox.url, stop: (graceMs = 5000) => releasers.release(graceMs) };
  } catch (err) {
    await releasers.release(5000);
    throw err;
  }
}
