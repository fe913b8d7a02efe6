import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";
import type { Db } from "./db.ts";
import { migrate } from "./migrate.ts";
import { openPglite } from "./pglite.ts";
import { openPostgres } from "./postgres.ts";

/** Opens the configured store (PostgreSQL when DATABASE_URL is set, else PGlite in the data directory) and migrates it. */
export async function openStore(config: Pick<Config, "databaseUrl" | "dataDir">, log: Logger): Promise<Db> {
  const db = config.databaseUrl
    ? openPostgres({ url: config.databaseUrl, onError: (err) => log.warn({ err: err.message }, "store connection error; the pool reconnects by itself") })
    : await openPglite(join(config.dataDir, "pgdata"), { log });
  try {
    const applied = await migrate(db);
    if (applied.length) log.info({ applied }, "migrations applied");
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
