import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";
import { loadOrCreateMasterKeyFile, parseMasterKey } from "./cipher.ts";

/** The master key: CONVEER_MASTER_KEY, or a 0600 key file in the data directory (the embedded default). */
export async function loadMasterKey(config: Pick<Config, "masterKey" | "dataDir" | "databaseUrl">, log: Logger): Promise<Buffer> {
  if (config.masterKey) return parseMasterKey(config.masterKey);
  const path = join(config.dataDir, "master.key");
  if (config.databaseUrl) {
    log.warn({ path }, "CONVEER_MASTER_KEY is not set: using a key file in the data directory; every replica on this database needs the same key (set CONVEER_MASTER_KEY)");
  }
  return loadOrCreateMasterKeyFile(path);
}
