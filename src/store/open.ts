import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";
import type { Db } from "./db.ts";
import { migrate } from "./migrate.ts";
import { openPglite } from "./pglite.ts";
import { openPostgres } from "./postgres.ts";

type StoreConfig = Pick<Config, "databaseUrl" | "dataDir"> & Partial<Pick<Config, "db">>;

/** Opens the configured store (PostgreSQL when DATABASE_URL is set, else PGlite in the data directory) and migrates it. */
export async function openStore(config: StoreConfig, log: Logger): Promise<Db> {
  const db = await openUnmigrated(config, log);
  try {
    const applied = await migrate(db);
    if (applied.length) log.info({ applied }, "migrations applied");
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

/** Opens the configured store as it is, applying no migration. */
export async function openUnmigrated(config: StoreConfig, log: Logger): Promise<Db> {
  return config.databaseUrl
    ? openPostgres({
        url: config.databaseUrl,
        max: config.db?.poolSize,
        connectTimeoutMs: config.db?.connectTimeoutMs,
        queryTimeoutMs: config.db?.queryTimeoutMs,
        poolWaitMs: config.db?.poolWaitMs,
        onError: (err) => log.warn({ err: err.message }, "store connection failed; the pool replaces lost connections"),
        onHealth: (h) => (h.ok ? log.info("store is back: serving again") : log.error({ reason: h.reason }, "store is down: calls answer UNAVAILABLE until it is back")),
      })
    : await openPglite(join(config.dataDir, "pgdata"), { log });
}
