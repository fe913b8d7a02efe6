import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { pino } from "pino";
import type { Logger } from "pino";
import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { AccountService } from "./gen/conveer/v1/account_pb.js";
import { ProxyService } from "./gen/conveer/v1/proxy_pb.js";
import { WarmingService } from "./gen/conveer/v1/warming_pb.js";
import { SMSService } from "./gen/conveer/v1/sms_pb.js";
import { VKService } from "./gen/conveer/v1/vk_pb.js";
import { TelegramService } from "./gen/conveer/v1/telegram_pb.js";
import { MailService } from "./gen/conveer/v1/mail_pb.js";
import { MaxService } from "./gen/conveer/v1/max_pb.js";
import { createAccounts } from "./accounts/accounts.ts";
import { accountService } from "./accounts/account-service.ts";
import { createProxies } from "./proxies/proxies.ts";
import { proxyService } from "./proxies/proxy-service.ts";
import { createHealthChecker } from "./proxies/health-checker.ts";
import { resolveProxyTargets } from "./proxies/address-policy.ts";
import { createAuthenticator, systemPrincipal } from "./auth/tokens.ts";
import { decideAuthMode } from "./auth/auth-mode.ts";
import type { ListenAddr } from "./auth/auth-mode.ts";
import { SERVICE_NAMES, SERVICE_PORTS } from "./config/config.ts";
import type { Config, ServiceName } from "./config/config.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "./server/grpc-server.ts";
import { createMetrics } from "./server/metrics.ts";
import { createReflection } from "./server/reflection.ts";
import { bindGrpc, loadTls, serverCredentials } from "./server/listen.ts";
import { remoteClient } from "./server/clients.ts";
import { localClient } from "./server/local-client.ts";
import { PLATFORMS, isPlatform } from "./domain.ts";
import type { Platform } from "./domain.ts";
import { createSandbox, createSandboxDriver, createSandboxSmsProvider } from "./sandbox/index.ts";
import { createSms } from "./sms/sms.ts";
import { smsService } from "./sms/sms-service.ts";
import { createPlatforms } from "./platforms/platforms.ts";
import { platformService } from "./platforms/platform-service.ts";
import type { PlatformDriver } from "./platforms/driver.ts";
import { createWarming } from "./warming/warming.ts";
import { warmingService } from "./warming/warming-service.ts";
import { systemClock } from "./warming/clock.ts";
import { loadScenarios } from "./warming/scenario.ts";
import { AppError } from "./errors.ts";
import { startHttp } from "./server/http.ts";
import type { ServiceBinding } from "./server/service-binding.ts";
import type { Db } from "./store/db.ts";
import { openStore } from "./store/open.ts";
import { createIdGenerator } from "./store/ids.ts";
import { createVault } from "./vault/vault.ts";
import { loadMasterKey } from "./vault/master-key.ts";

/** The generated descriptor of each service. */
const DESCRIPTORS: Record<ServiceName, DescService> = {
  account: AccountService,
  proxy: ProxyService,
  warming: WarmingService,
  sms: SMSService,
  vk: VKService,
  telegram: TelegramService,
  mail: MailService,
  max: MaxService,
};

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
 * with health and reflection), background work, and the HTTP port. This is the one place that
 * decides how services reach each other: a direct call when the peer runs in this process, a
 * gRPC client to the peer's `*_SERVICE_GRPC_ADDR` when it does not.
 */
export async function startApp(opts: AppOptions): Promise<App> {
  const { config } = opts;
  const services = opts.services ?? SERVICE_NAMES;
  const log = opts.log ?? pino({ level: config.logLevel, base: { pid: process.pid } });
  const shutdown = new AbortController();
  const cleanups: (() => Promise<void>)[] = [];
  let grace = 5000;
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err) => log.warn({ err: String(err) }, "error while stopping"));
  };
  try {
    await mkdir(config.dataDir, { recursive: true });
    const db = opts.db ?? (await openStore(config, log));
    cleanups.push(() => db.close());
    const newId = createIdGenerator();
    const vault = await createVault(db, await loadMasterKey(config, log, db), newId);
    cleanups.push(() => vault.stop());

    // Open mode (no token needed) is allowed only while every address this process listens on is loopback.
    const platformNames = PLATFORMS.filter((p) => services.includes(p));
    const sandboxInProcess = !config.sandbox.url && (services.includes("sms") || platformNames.length > 0);
    const listen: ListenAddr[] = [
      ...services.map((s) => ({ addr: config.addrs[s], env: SERVICE_PORTS[s].env })),
      { addr: config.httpAddr, env: "CONVEER_HTTP_ADDR" },
      ...(sandboxInProcess ? [{ addr: config.sandbox.addr, env: "CONVEER_SANDBOX_ADDR" }] : []),
    ];
    const auth = createAuthenticator({ db, mode: (await decideAuthMode(db, config.auth, listen, log)).mode });
    const metrics = createMetrics();
    const deps = { log, auth, metrics, shutdown: shutdown.signal };

    // Each service's domain and binding. A peer is reached by a direct call when it runs in this
    // process, by a gRPC client to its *_SERVICE_GRPC_ADDR when it does not.
    const bindings: Partial<Record<ServiceName, ServiceBinding>> = {};
    const stopBeforeDrain: (() => Promise<void>)[] = [];
    function peer<S extends DescService>(name: ServiceName, who: string): Client<S> {
      const local = services.includes(name) ? bindings[name] : undefined;
      return local
        ? localClient<S>(local, systemPrincipal(who))
        : remoteClient(DESCRIPTORS[name] as S, { addr: config.addrs[name], token: config.token, tls: Boolean(config.tlsCert) });
    }

    const accounts = createAccounts({ db, vault, newId });
    bindings.account = accountService(accounts);

    // The sandbox: the only platform and SMS provider Conveer ships. In-process unless
    // CONVEER_SANDBOX_URL names a standalone one (`conveer sandbox`), which replicas must share.
    // Its admin and SMS endpoints need CONVEER_SANDBOX_TOKEN whenever Conveer needs tokens (in-process
    // without one set: a random token only this process knows); the platform endpoints are public.
    let sandboxUrl = config.sandbox.url;
    const sandboxToken = config.sandbox.token || (sandboxInProcess ? randomBytes(24).toString("base64url") : "");
    if (sandboxInProcess) {
      const sandbox = createSandbox({
        dataFile: join(config.dataDir, "sandbox.json"),
        log: log.child({ component: "sandbox" }),
        access: { token: sandboxToken, required: async () => !(await auth.isOpen()) },
      });
      sandboxUrl = (await sandbox.listen(config.sandbox.addr)).url;
      cleanups.push(() => sandbox.close());
      log.info(
        { url: sandboxUrl },
        config.sandbox.token
          ? "sandbox platform started in-process; its admin and SMS endpoints need CONVEER_SANDBOX_TOKEN whenever Conveer needs tokens"
          : "sandbox platform started in-process; whenever Conveer needs tokens, its admin and SMS endpoints need a token only this process knows (set CONVEER_SANDBOX_TOKEN to call them yourself)",
      );
    }

    // The proxy address policy and check targets need the sandbox's address, known only now.
    const proxyTargets = await resolveProxyTargets({ ...config.proxy, databaseUrl: config.databaseUrl, drivers: config.platforms.drivers, sandboxUrl });
    log.info({ check_target: proxyTargets.checkTarget, allow_private: config.proxy.allowPrivate }, "proxy health checks target %s", proxyTargets.checkTarget);
    const proxies = createProxies({
      db,
      vault,
      newId,
      accounts: peer<typeof AccountService>("account", "proxy-service"),
      log,
      options: {
        leaseMs: config.proxy.leaseMs,
        checkTarget: proxyTargets.checkTarget,
        allowedTargets: proxyTargets.allowedTargets,
        policy: proxyTargets.policy,
        checkTimeoutMs: config.proxy.checkTimeoutMs,
        failureThreshold: config.proxy.failureThreshold,
      },
    });
    bindings.proxy = proxyService(proxies);

    if (services.includes("sms")) {
      const provider = createSandboxSmsProvider({ baseUrl: sandboxUrl, token: sandboxToken });
      cleanups.push(() => provider.close());
      const sms = createSms({ db, providers: [provider], newId, log });
      await sms.start();
      // Stopped before the servers drain (cleanups run in reverse): waiting GetCode calls end at
      // once with UNAVAILABLE ("call again") instead of holding shutdown for the grace period.
      stopBeforeDrain.push(() => sms.stop());
      bindings.sms = smsService(sms);
    }

    if (platformNames.length > 0) {
      const drivers: Partial<Record<Platform, PlatformDriver>> = {};
      for (const p of PLATFORMS) if (config.platforms.drivers[p] === "sandbox") drivers[p] = createSandboxDriver(p, { baseUrl: sandboxUrl });
      const platforms = createPlatforms({
        db,
        drivers,
        newId,
        log,
        peers: {
          accounts: peer<typeof AccountService>("account", "platform-service"),
          proxies: peer<typeof ProxyService>("proxy", "platform-service"),
          sms: peer<typeof SMSService>("sms", "platform-service"),
        },
        options: { codeTimeoutSeconds: config.platforms.codeTimeoutSeconds, leaseMs: config.platforms.registrationLeaseMs },
      });
      for (const p of platformNames) bindings[p] = platformService(DESCRIPTORS[p] as typeof VKService, p, platforms);
      // Registrations left running by a process that died are cleaned up (number refunded, proxy freed).
      const recovery = every(config.platforms.registrationLeaseMs, () => platforms.recoverAbandoned(), log, "registration recovery");
      cleanups.push(recovery);
    }

    if (services.includes("warming")) {
      const warming = createWarming({
        db,
        newId,
        log,
        clock: systemClock(config.warming.timeScale),
        scenarios: await loadScenarios(config.warming.scenariosDir || undefined),
        options: {
          runWorker: config.warming.worker,
          batchSize: config.warming.batchSize,
          concurrency: config.warming.concurrency,
          leaseMs: config.warming.leaseMs,
          maxConsecutiveFailures: config.warming.maxConsecutiveFailures,
          eventRetentionMs: config.warming.eventRetentionDays * 86_400_000,
        },
        peers: {
          accounts: peer<typeof AccountService>("account", "warming"),
          platforms: (platform) => {
            if (!isPlatform(platform)) throw new AppError("FAILED_PRECONDITION", `no platform service for ${JSON.stringify(platform)}`);
            return peer<typeof VKService>(platform, "warming");
          },
        },
      });
      await warming.start();
      stopBeforeDrain.push(() => warming.stop(grace));
      metrics.addCollected("conveer_warming_worker_actions", "Warming actions this process's worker claimed, recorded, dropped (its claim was taken over) and holds in flight, since start", "state", () => {
        const s = warming.workerStats();
        return { claimed: s.claimed, recorded: s.recorded, dropped: s.dropped, in_flight: s.inFlight };
      });
      bindings.warming = warmingService(warming);
    }

    const health = new HealthImplementation({ "": "SERVING" });
    const reflection = createReflection();
    const tls = loadTls(config.tlsCert, config.tlsKey);
    const creds = serverCredentials(tls);
    const ports: Partial<Record<ServiceName, number>> = {};
    const servers: grpc.Server[] = [];
    for (const name of services) {
      const binding = bindings[name] ?? { service: DESCRIPTORS[name] };
      health.setStatus(DESCRIPTORS[name].typeName, bindings[name] ? "SERVING" : "NOT_SERVING");
      const server = new grpc.Server(GRPC_SERVER_OPTIONS);
      const { definition, handlers } = grpcServiceOf(binding, deps);
      server.addService(definition, handlers);
      health.addToServer(server);
      reflection.addToServer(server);
      ports[name] = await bindGrpc(server, config.addrs[name], creds, SERVICE_PORTS[name].env);
      servers.push(server);
    }
    cleanups.push(() => drain(servers, shutdown, grace));
    cleanups.push(...stopBeforeDrain);

    // Health Watch streams every setStatus to its watchers: report only changes (the health protocol).
    let storeStatus: "SERVING" | "NOT_SERVING" = "SERVING";
    const reportStore = (s: typeof storeStatus) => {
      if (s !== storeStatus) health.setStatus("", (storeStatus = s));
    };
    // The probe also keeps the store's own monitor current, so a store that went silent (no
    // reset, no error) is noticed within a probe period and calls then fail fast.
    const storeProbe = setInterval(() => {
      void db.ping(HEALTH_PING_MS).then((h) => reportStore(h.ok ? "SERVING" : "NOT_SERVING"));
    }, 1000);
    storeProbe.unref();
    cleanups.push(async () => clearInterval(storeProbe));

    if (services.includes("proxy")) {
      const checker = createHealthChecker({ db, proxies, log, intervalMs: config.proxy.checkIntervalMs, target: proxyTargets.checkTarget });
      checker.start();
      cleanups.push(() => checker.stop());
    }

    const http = await startHttp({ addr: config.httpAddr, tls, metrics, db, pingMs: HEALTH_PING_MS, services: services.map((s) => ({ name: DESCRIPTORS[s].typeName, implemented: Boolean(bindings[s]) })) });
    cleanups.push(() => http.close());

    log.info({ ports, http: http.port, store: db.kind, services }, "conveer started");
    let stopping: Promise<void> | undefined;
    return {
      ports,
      httpPort: http.port,
      log,
      sandboxUrl,
      stop(graceMs = 5000) {
        grace = graceMs;
        stopping ??= cleanup();
        return stopping;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** How long a health answer waits for the store: /healthz must answer within a second. */
const HEALTH_PING_MS = 900;

/** Stops accepting calls, lets in-flight ones finish for up to graceMs, then cuts the rest. */
async function drain(servers: grpc.Server[], shutdown: AbortController, graceMs: number): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            shutdown.abort();
            s.forceShutdown();
            resolve();
          }, graceMs);
          s.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
  shutdown.abort();
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
