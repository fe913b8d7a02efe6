import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Logger } from "pino";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { startApp } from "../../src/app.ts";
import type { App } from "../../src/app.ts";
import { SERVICE_NAMES, loadConfig } from "../../src/config/config.ts";
import type { Config, ServiceName } from "../../src/config/config.ts";
import { AccountService } from "../../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../../src/gen/conveer/v1/proxy_pb.js";
import { WarmingService } from "../../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../../src/server/clients.ts";
import type { Db } from "../../src/store/db.ts";
import { freshStore } from "./store.ts";

/** A running system on free loopback ports, with real gRPC clients. */
export type TestSystem = {
  app: App;
  db: Db;
  config: Config;
  accounts: Client<typeof AccountService>;
  proxies: Client<typeof ProxyService>;
  addr(name: ServiceName): string;
  /** Clients of the gRPC ports with another token (the warming client only when the system serves warming). */
  as(token: string): { accounts: Client<typeof AccountService>; proxies: Client<typeof ProxyService>; warming: Client<typeof WarmingService> };
  stop(): Promise<void>;
};

/**
 * Starts the whole system (or a subset) on a fresh store of the given kind. `backgroundChecks:
 * false`: the proxy pool's checker leaves the proxies alone (a proxy added is not due for a day,
 * nor checked again within one), so a test's local proxies count only the tunnels it makes and its
 * unreachable proxies stay in rotation.
 */
export async function startTestSystem(
  kind: "pglite" | "postgres",
  opts: { env?: Record<string, string>; services?: ServiceName[]; token?: string; log?: Logger; backgroundChecks?: false } = {},
): Promise<TestSystem> {
  const store = await freshStore(kind);
  if (opts.backgroundChecks === false) await store.db.query("ALTER TABLE proxies ALTER COLUMN next_check_at SET DEFAULT now() + interval '1 day'");
  const dataDir = await mkdtemp(join(tmpdir(), "conveer-test-"));
  const quiet: Record<string, string> = opts.backgroundChecks === false ? { CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000" } : {};
  const env: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "11".repeat(32), ...quiet, ...opts.env };
  for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
  const config = loadConfig(env);
  const app = await startApp({ config, services: opts.services, db: store.db, log: opts.log ?? pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }) });
  const addr = (name: ServiceName) => `127.0.0.1:${app.ports[name]}`;
  const sessions: Http2SessionManager[] = [];
  const clients = (token?: string) => ({
    accounts: remoteClient(AccountService, { addr: addr("account"), token, sessions }),
    proxies: remoteClient(ProxyService, { addr: addr("proxy"), token, sessions }),
    // Made when first used: a system started without the warming service has no port for it.
    get warming() {
      return remoteClient(WarmingService, { addr: addr("warming"), token, sessions });
    },
  });
  const own = clients(opts.token);
  return {
    app,
    db: store.db,
    config,
    accounts: own.accounts,
    proxies: own.proxies,
    addr,
    as: clients,
    async stop() {
      for (const s of sessions) s.abort();
      await app.stop(1000);
      await store.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
