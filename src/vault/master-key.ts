import { randomBytes } from "node:crypto";
import { link, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";
import type { Queryable } from "../store/db.ts";
import { keyFingerprint, loadOrCreateMasterKeyFile, parseMasterKey, readMasterKeyFile } from "./cipher.ts";
import { unwrapsAll } from "./rekey.ts";

/** The master key file in the data directory (when CONVEER_MASTER_KEY is not set). */
export const KEY_FILE = "master.key";
/**
 * The new key `conveer keys rotate-master` writes (synced) before it commits the re-wrap; after the
 * commit it becomes master.key. A start that finds it left over uses whichever of the two unwraps
 * the data keys, and finishes or discards the rotation accordingly.
 */
export const PENDING_KEY_FILE = "master.key.new";

type KeyConfig = Pick<Config, "masterKey" | "masterKeyPrevious" | "dataDir" | "databaseUrl">;

/**
 * The master keys a process unwraps data keys with: the current one (loadMasterKey), then
 * CONVEER_MASTER_KEY_PREVIOUS when set (during a rotation of the master key across hosts).
 */
export async function loadMasterKeys(config: KeyConfig, log: Logger, db: Queryable): Promise<Buffer[]> {
  const current = await loadMasterKey(config, log, db);
  return config.masterKeyPrevious ? [current, parseMasterKey(config.masterKeyPrevious, "CONVEER_MASTER_KEY_PREVIOUS")] : [current];
}

/**
 * The master key: CONVEER_MASTER_KEY, or a 0600 key file in the data directory (the embedded
 * default). A key file is created only for a store that holds no data key yet: a store whose data
 * keys were wrapped by a master key that is now missing is refused, never given a fresh key.
 * A master.key.new left by an interrupted `keys rotate-master` is settled first.
 */
export async function loadMasterKey(config: Pick<Config, "masterKey" | "dataDir" | "databaseUrl">, log: Logger, db: Queryable): Promise<Buffer> {
  if (config.masterKey) return parseMasterKey(config.masterKey);
  const path = join(config.dataDir, KEY_FILE);
  if (config.databaseUrl) {
    log.warn({ path }, "CONVEER_MASTER_KEY is not set: using a key file in the data directory; every replica on this database needs the same key (set CONVEER_MASTER_KEY)");
  }
  await settlePendingKeyFile(config.dataDir, log, db);
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

/**
 * A master.key.new left behind: when it unwraps the data keys, the re-wrap committed and the
 * process stopped before installing it, so it is installed now; when master.key unwraps them,
 * the re-wrap never committed, so it is removed. Neither: refused, naming both files.
 */
async function settlePendingKeyFile(dataDir: string, log: Logger, db: Queryable): Promise<void> {
  const pendingPath = join(dataDir, PENDING_KEY_FILE);
  const pending = await readMasterKeyFile(pendingPath);
  if (!pending) return;
  if (await unwrapsAll(db, pending)) {
    const kept = await installKeyFile(dataDir, pending);
    log.warn({ kept }, `finished an interrupted master key rotation: the data keys are wrapped by ${PENDING_KEY_FILE} (key ${keyFingerprint(pending)}), now ${KEY_FILE}`);
    return;
  }
  const current = await readMasterKeyFile(join(dataDir, KEY_FILE));
  if (current && (await unwrapsAll(db, current))) {
    await unlink(pendingPath);
    log.warn(`removed ${pendingPath}, left by a master key rotation that did not commit: the data keys are still wrapped by ${KEY_FILE}`);
    return;
  }
  throw new Error(
    `neither ${join(dataDir, KEY_FILE)} nor ${pendingPath} (left by an interrupted \`conveer keys rotate-master\`) unwraps the store's data keys; ` +
      "restore the master key from a backup, or set CONVEER_MASTER_KEY to it",
  );
}

/**
 * Makes `key` the data directory's master.key: the one there now is kept as
 * master.key.old-<time> (it opens backups made before), the new one is written aside, synced and
 * renamed over it, master.key.new is removed, and the directory is synced. Answers the kept
 * file's path ("" when there was none, or it held the same key).
 */
export async function installKeyFile(dataDir: string, key: Buffer): Promise<string> {
  const path = join(dataDir, KEY_FILE);
  const old = await readMasterKeyFile(path);
  let kept = "";
  if (old && !old.equals(key)) {
    kept = `${path}.old-${new Date().toISOString().replace(/[-:.]/g, "")}`;
    await link(path, kept);
  }
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(key.toString("hex") + "\n", "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await unlink(join(dataDir, PENDING_KEY_FILE)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  const dir = await open(dataDir, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return kept;
}
