import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { createAuthenticator } from "../auth/tokens.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { decideAuthMode } from "../auth/auth-mode.ts";
import type { ListenAddr } from "../auth/auth-mode.ts";
import { SERVICE_PORTS } from "../config/config.ts";
import type { Config, ServiceName } from "../config/config.ts";
import { PLATFORMS } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { createSandbox } from "../sandbox/index.ts";
import { createMetrics } from "../server/metrics.ts";
import type { Metrics } from "../server/metrics.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { Db } from "../store/db.ts";
import { openStore } from "../store/open.ts";
import { timedDb } from "../store/timed-db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { tracedDb } from "../store/traced-db.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { loadMasterKeys } from "../vault/master-key.ts";
import { createPeerResolver } from "./peers.ts";
import type { PeerResolver } from "./peers.ts";
import type { Releasers } from "./releasers.ts";

/** What every mount is given: the shared machinery of one running system, built once. */
export type AppContext = {
  config: Config;
  /** The services this process serves. */
  services: readonly ServiceName[];
  /** The platform services among them. */
  platforms: readonly Platform[];
  log: Logger;
  db: Db;
  vault: Vault;
  newId: () => string;
  auth: Authenticator;
  metrics: Metrics;
  /** Aborted when the gRPC drain gives up on in-flight calls: their handler contexts end. */
  shutdown: AbortController;
  /** The sandbox platform: its base URL (in-process or CONVEER_SANDBOX_URL; "" when none) and admin token. */
  sandbox: { url: string; token: string };
  /** Each mounted service's binding, filled in as they mount; the peer resolver reads it. */
  bindings: Partial<Record<ServiceName, ServiceBinding>>;
  /** How this process reaches another service (see createPeerResolver). */
  peer: PeerResolver;
  releasers: Releasers;
};

/**
 * Opens what the services share, registering each one's release: the store (migrated, or the one
 * given), the vault, the auth mode, the metrics, and the sandbox when it runs in this process.
 */
export async function createAppContext(config: Config, services: readonly ServiceName[], log: Logger, given: Db | undefined, releasers: Releasers): Promise<AppContext> {
  await mkdir(config.dataDir, { recursive: true });
  const metrics = createMetrics();
  const opened = given ?? (await openStore(config, log));
  releasers.add("store", () => opened.close());
  // With a tracer provider registered, queries inside traced calls are spans; every query is timed (conveer_store_query_duration_seconds).
  const db = timedDb(tracingEnabled() ? tracedDb(opened) : opened, metrics.storeQuery);
  metrics.addGauge("conveer_store_up", "1 while this process reaches the store, 0 while it is down (its health monitor's view; no query at scrape)", [], () => [{ labels: {}, value: db.health().ok ? 1 : 0 }]);
  const newId = createIdGenerator();
  const vault = await createVault(db, await loadMasterKeys(config, log, db), newId);
  releasers.add("vault", () => vault.stop());

  // Open mode (no token needed) is allowed only while every address this process listens on is loopback.
  const platforms = PLATFORMS.filter((p) => services.includes(p));
  const sandboxInProcess = !config.sandbox.url && (services.includes("sms") || platforms.length > 0);
  const listen: ListenAddr[] = [
    ...services.map((s) => ({ addr: config.addrs[s], env: SERVICE_PORTS[s].env })),
    { addr: config.httpAddr, env: "CONVEER_HTTP_ADDR" },
    ...(sandboxInProcess ? [{ addr: config.sandbox.addr, env: "CONVEER_SANDBOX_ADDR" }] : []),
  ];
  const auth = createAuthenticator({ db, mode: (await decideAuthMode(db, config.auth, listen, log)).mode });
  const sandbox = sandboxInProcess ? await startSandbox(config, log, auth, releasers) : { url: config.sandbox.url, token: config.sandbox.token };
  const bindings: AppContext["bindings"] = {};
  const peer = createPeerResolver(config, services, bindings);
  return { config, services, platforms, log, db, vault, newId, auth, metrics, shutdown: new AbortController(), sandbox, bindings, peer, releasers };
}

/**
 * The sandbox: the only platform and SMS provider Conveer ships. In-process unless
 * CONVEER_SANDBOX_URL names a standalone one (`conveer sandbox`), which replicas must share.
 * Its admin and SMS endpoints need CONVEER_SANDBOX_TOKEN whenever Conveer needs tokens (in-process
 * without one set: a random token only this process knows); the platform endpoints are public.
 */
async function startSandbox(config: Config, log: Logger, auth: Authenticator, releasers: Releasers): Promise<AppContext["sandbox"]> {
  const token = config.sandbox.token || randomBytes(24).toString("base64url");
  const sandbox = createSandbox({
    dataFile: join(config.dataDir, "sandbox.json"),
    log: log.child({ component: "sandbox" }),
    access: { token, required: async () => !(await auth.isOpen()) },
  });
  const url = (await sandbox.listen(config.sandbox.addr)).url;
  releasers.add("sandbox", () => sandbox.close());
  log.info(
    { url },
    config.sandbox.token
      ? "sandbox platform started in-process; its admin and SMS endpoints need CONVEER_SANDBOX_TOKEN whenever Conveer needs tokens"
      : "sandbox platform started in-process; whenever Conveer needs tokens, its admin and SMS endpoints need a token only this process knows (set CONVEER_SANDBOX_TOKEN to call them yourself)",
  );
  return { url, token };
}
