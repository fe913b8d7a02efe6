import { randomBytes } from "node:crypto";
import { unlink } from "node:fs/promises";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { pino } from "pino";
import { recordAudit } from "../audit/audit-log.ts";
import type { Config } from "../config/config.ts";
import { keyFingerprint, parseMasterKey, readMasterKeyFile, writeNewKeyFile } from "../vault/cipher.ts";
import { KEY_FILE, PENDING_KEY_FILE, installKeyFile, loadMasterKeys } from "../vault/master-key.ts";
import { RewrapRefused, rewrapDataKeys } from "../vault/rekey.ts";
import { withStore } from "./admin-reach.ts";

type Opts = { newKeyFile?: string; generate?: boolean };

/** `keys rotate-master`: re-wraps the data keys under a new master key, on the store directly. */
export function registerRotateMaster(keys: Command, getConfig: () => Config): void {
  keys
    .command("rotate-master")
    .description(
      "re-wrap every data key under a new master key, in one transaction, on the store directly (embedded store: stop the server first); " +
        "the secrets stay sealed by the same data keys. The new key comes from --new-key-file, CONVEER_NEW_MASTER_KEY or --generate, never the command line",
    )
    .option("--new-key-file <path>", "the new master key (64 hex characters or base64 of 32 bytes); with --generate, a file that must not exist yet, to write a fresh key to (0600)")
    .option("--generate", "make a fresh random key: written to --new-key-file, or, with the data directory's master.key, straight into it")
    .action((o: Opts) => rotateMaster(getConfig(), o));
}

/** The new key, read or made; `made` is the file --generate wrote (removed again if nothing was committed). */
type NewKey = { key: Buffer; made?: string };

async function newKey(config: Config, o: Opts): Promise<NewKey> {
  const fromEnv = Boolean(config.newMasterKey);
  if (fromEnv && (o.generate || o.newKeyFile)) throw new Error("CONVEER_NEW_MASTER_KEY is set and --new-key-file or --generate given too: give the new master key one way");
  if (o.generate) {
    if (o.newKeyFile) {
      const path = resolve(o.newKeyFile);
      return { key: await writeNewKeyFile(path), made: path };
    }
    if (config.masterKey) throw new Error("--generate without --new-key-file: CONVEER_MASTER_KEY is set, so the new key must go somewhere you can copy it from; add --new-key-file PATH (a file that does not exist yet)");
    return { key: randomBytes(32) };
  }
  if (o.newKeyFile) {
    const path = resolve(o.newKeyFile);
    const key = await readMasterKeyFile(path);
    if (!key) throw new Error(`--new-key-file ${path} does not exist (to make a new key there, add --generate)`);
    return { key };
  }
  if (fromEnv) return { key: parseMasterKey(config.newMasterKey, "CONVEER_NEW_MASTER_KEY") };
  // A host switched over (new key current, old one previous): the new key is the current one.
  if (config.masterKey && config.masterKeyPrevious) return { key: parseMasterKey(config.masterKey) };
  throw new Error(
    "give the new master key: --new-key-file PATH, CONVEER_NEW_MASTER_KEY, or --generate [--new-key-file PATH] (never as an argument: it would show in ps); " +
      "or set CONVEER_MASTER_KEY to the new key and CONVEER_MASTER_KEY_PREVIOUS to the old one",
  );
}

/**
 * Re-wraps the data keys under the new key in one transaction (audited). With the data directory's
 * key file: the new key is first written (synced) as master.key.new, and after the commit installed
 * as master.key, the old one kept beside it (a start after a crash in between settles it).
 */
async function rotateMaster(config: Config, o: Opts): Promise<void> {
  const fileMode = !config.masterKey;
  const next = await newKey(config, o);
  const pending = join(config.dataDir, PENDING_KEY_FILE);
  // Until the transaction starts, and when it was refused, nothing was committed: the files made for it go.
  let unchanged = true;
  const lockedHint = "keys rotate-master works on the store directly: stop the server, run it, then start the server again";
  try {
    await withStore(
      config,
      async (db) => {
        // Warnings (a master.key.new settled, a key file on PostgreSQL) go to stderr: stdout is the result.
        const current = await loadMasterKeys(config, pino({ level: "warn" }, pino.destination(2)), db);
        // Re-wrapping under the key in use does nothing, unless a previous key is to be replaced by it.
        if (current.length === 1 && current[0].equals(next.key)) throw new Error(`the new master key is the one in use (${fileMode ? KEY_FILE : "CONVEER_MASTER_KEY"}, key ${keyFingerprint(next.key)}): give another`);
        if (fileMode) await writeNewKeyFile(pending, next.key);
        const who = { name: `cli@${userInfo().username}`, peer: "local" };
        unchanged = false;
        const r = await rewrapDataKeys(db, current, next.key, (tx, r) =>
          recordAudit(tx, who, { action: "keys.rotate_master", target: keyFingerprint(next.key), detail: `${r.keys} data keys re-wrapped under master key ${keyFingerprint(next.key)}, from ${keyFingerprint(current[0])}` }),
        ).catch((err: Error) => {
          if (!(err instanceof RewrapRefused)) throw err;
          unchanged = true;
          throw new Error(`${err.message}. Nothing was changed: rotate-master unwraps the data keys with the current master key (${fileMode ? join(config.dataDir, KEY_FILE) : "CONVEER_MASTER_KEY"}) and re-wraps them under the new one`, { cause: err });
        });
        const kept = fileMode ? await installKeyFile(config.dataDir, next.key) : "";
        report(config, r.keys, next.key, kept);
      },
      lockedHint,
    );
  } catch (err) {
    if (unchanged) {
      if (fileMode) await unlink(pending).catch(() => {});
      if (next.made) await unlink(next.made).catch(() => {});
      throw err;
    }
    // The commit may or may not have happened: keep the new key wherever it is.
    const where = [fileMode ? pending : "", next.made ?? ""].filter(Boolean).join(" and ");
    throw new Error(
      `${(err as Error).message}. The re-wrap may have committed or not${where ? `: the new key is kept in ${where}` : ""}; ` +
        (fileMode ? "the next start (or running this again) uses whichever key unwraps the data keys" : "run this again with the same new key: it re-wraps whatever is still under the old one"),
      { cause: err },
    );
  }
}

function report(config: Config, keys: number, key: Buffer, kept: string): void {
  process.stdout.write(`re-wrapped ${keys} data key(s) under the new master key ${keyFingerprint(key)}\n`);
  const path = join(config.dataDir, KEY_FILE);
  const notes = config.masterKey
    ? [
        "set CONVEER_MASTER_KEY to the new key on every host that does not have it yet (hosts already running keep working until restarted; restart them all before the next `keys rotate`), then remove CONVEER_MASTER_KEY_PREVIOUS",
        "keep the old key with the backups made before now: they need it",
      ]
    : [
        `${path} holds the new key: back it up now`,
        ...(kept ? [`the previous key is kept as ${kept}: it opens the backups made before now; move it off this machine with them, or delete it`] : []),
        ...(config.databaseUrl ? ["every other host on this database with its own master.key needs the new one too (better: CONVEER_MASTER_KEY)"] : []),
      ];
  for (const n of notes) process.stderr.write(`conveer: ${n}\n`);
}
