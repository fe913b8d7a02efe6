import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";
import type { Queryable } from "../store/db.ts";
import { loadOrCreateMasterKeyFile, parseMasterKey, readMasterKeyFile } from "./cipher.ts";

/**
 * The master key: CONVEER_MASTER_KEY, or a 0600 key file in the data directory (the embedded
 * default). A key file is created only for a store that holds no data key yet: a store whose data
 * keys were wrapped by a master key that is now missing is refused, never given a fresh key.
 */
export async function loadMasterKey(config: Pick<Config, "masterKey" | "dataDir" | "databaseUrl">, log: Logger, db: Queryable): Promise<Buffer> {
  if (config.masterKey) return parseMasterKey(config.masterKey);
  const path = join(config.dataDir, "master.key");
  if (config.databaseUrl) {
    log.warn({ path }, "CONVEER_MASTER_KEY is not set: using a key file in the data directory; every replica on this database needs the same key (set CONVEER_MASTER_KEY)");
  }
  const existing = await readMasterKeyFile(path);
  if (existing) return existing;
  const keys = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM data_keys")).rows[0].n;
  if (keys > 0) {
    const store = config.databaseUrl ? "the PostgreSQL store (DATABASE_URL)" : `the embedded store in ${join(config.dataDir, "pgdata")}`;
    throw new Error(
      `the master key file ${path} is missing and CONVEER_MASTER_KEY is not set, but ${store} holds ${keys} data key(s) ` +
        "wrapped by a master key; a new key could not open them, so none is made. Restore master.key from a backup " +
        `(then \`chmod 600 ${path}\`), or set CONVEER_MASTER_KEY to that key. Without it the sealed credentials cannot be recovered; ` +
        "to start over with an empty store, move the data directory aside",
    );
  }
  return loadOrCreateMasterKeyFile(path);
}
