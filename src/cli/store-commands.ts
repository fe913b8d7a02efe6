import { resolve } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { pino } from "pino";
import type { Config } from "../config/config.ts";
import { backupDataDir, restoreDataDir, writeArchive } from "../store/backup.ts";
import type { BackupResult } from "../store/backup.ts";
import { loadMigrations, migrate, migrationStatus, rollingUpgradeHazards, uniqueIndexesOf } from "../store/migrate.ts";
import type { Db } from "../store/db.ts";
import { copyStore } from "../store/migrate-store.ts";
import { openStore, openUnmigrated } from "../store/open.ts";
import { openPostgres } from "../store/postgres.ts";
import { AdminService } from "../gen/conveer/v1/admin_pb.js";
import { adminServer } from "./admin-reach.ts";
import { serverClient } from "./cli-client.ts";
import { DataDirLocked, holdDataDirLock } from "./data-dir-lock.ts";

const KEY_NOTE =
  "the master key is NOT in this backup: back it up separately (master.key in the data directory, or your CONVEER_MASTER_KEY); the sealed credentials cannot be opened without it";

/** backup, restore, migrate-store and migrate: the embedded store's data directory, offline (they take its lock, so a running server makes them refuse; backup then goes through the server). */
export function registerStoreCommands(program: Command, getConfig: () => Config): void {
  program
    .command("backup")
    .description("write a consistent archive of the embedded store (CONVEER_DATA_DIR) to a file (0600); while a server runs on it, through that server (its calls wait while it dumps). For PostgreSQL use pg_dump")
    .requiredOption("--out <file>", "the archive to write (replaced atomically)")
    .option("--with-master-key", "put master.key in the archive too (the file then opens every secret: keep it as safe as the key)")
    .action(async (o: { out: string; withMasterKey?: boolean }) => {
      const config = embeddedOnly(getConfig(), "backup", "back it up with pg_dump (e.g. pg_dump -Fc -f conveer.dump \"$DATABASE_URL\"), and keep CONVEER_MASTER_KEY or master.key separately");
      const out = resolve(o.out);
      const opts = { withMasterKey: Boolean(o.withMasterKey) };
      const r = await offline(config, () => backupDataDir(config.dataDir, out, opts)).catch((err: unknown) => {
        if (err instanceof DataDirLocked && err.alive) return backupThroughServer(config, out, opts);
        throw err;
      });
      process.stdout.write(`backed up ${config.dataDir} to ${out} (store dump ${r.bytes} bytes${r.files.length ? `; with ${r.files.join(", ")}` : ""})\n`);
      process.stderr.write(
        o.withMasterKey
          ? `conveer: WARNING: ${out} holds master.key, the key to every secret in the store: whoever reads this file reads every credential. Keep it encrypted and offline\n`
          : `conveer: ${KEY_NOTE}\n`,
      );
    });
  program
    .command("restore <file>")
    .description("restore an archive made by `conveer backup` into CONVEER_DATA_DIR, which must be empty or absent (or --force); the server must be stopped")
    .option("--force", "replace the store of a data directory that is not empty")
    .action(async (file: string, o: { force?: boolean }) => {
      const config = embeddedOnly(getConfig(), "restore", "restore with pg_restore");
      const r = await offline(config, () => restoreDataDir(resolve(file), config.dataDir, { force: Boolean(o.force) }));
      process.stdout.write(`restored ${resolve(file)} into ${config.dataDir}${r.files.length ? ` (with ${r.files.join(", ")})` : ""}\n`);
      if (!r.files.includes("master.key") && !config.masterKey) {
        process.stderr.write(`conveer: the archive holds no master key: ${r.keptKey ? `the master.key already in ${config.dataDir} was kept; it must be the one this store was made with` : `put the original master.key in ${config.dataDir} (chmod 600), or set CONVEER_MASTER_KEY, before starting`}\n`);
      }
    });
  program
    .command("migrate-store")
    .description("copy every table of the embedded store (CONVEER_DATA_DIR) into an empty PostgreSQL database, then compare row counts; the server must be stopped")
    .requiredOption("--to <url>", "the target database, postgres://user@host:5432/db (migrated here first; it must hold no rows)")
    .action(async (o: { to: string }) => {
      if (!/^postgres(ql)?:\/\//.test(o.to)) throw new Error(`--to must be a postgres:// URL, got ${JSON.stringify(o.to)}`);
      const config = embeddedOnly(getConfig(), "migrate-store", "the store is already PostgreSQL");
      await offline(config, () => migrateStore(config, o.to));
    });
  program
    .command("migrate")
    .description("apply the store's pending migrations and exit (`conveer start` applies them too); --check applies nothing and lists them. On the embedded store the server must be stopped")
    .option("--check", "dry run: list applied and pending migrations, each pending one additive (safe while older hosts run: a rolling upgrade) or needing every host stopped")
    .action(async (o: { check?: boolean }) => {
      const config = getConfig();
      const run = async () => {
        const db = await openUnmigrated(config, pino({ level: "warn" }));
        try {
          await (o.check ? checkMigrations(db) : applyMigrations(db));
        } finally {
          await db.close();
        }
      };
      await (config.databaseUrl ? run() : offline(config, run));
    });
}

async function checkMigrations(db: Db): Promise<void> {
  const { applied, pending } = await migrationStatus(db);
  const unique = uniqueIndexesOf(await loadMigrations());
  for (const m of applied) process.stdout.write(`applied  ${m.name}${m.known ? "" : "  (newer than this release: this code does not know it)"}\n`);
  let stop = 0;
  for (const m of pending) {
    const hazards = rollingUpgradeHazards(m.sql, unique);
    if (hazards.length) stop++;
    process.stdout.write(`pending  ${m.name}  ${hazards.length ? "NEEDS EVERY HOST STOPPED" : "additive: safe while older hosts run"}\n`);
    for (const h of hazards) process.stdout.write(`           ${h}\n`);
  }
  process.stdout.write(`${applied.length} applied, ${pending.length} pending${pending.length ? ` (${stop} need every host stopped)` : ""}; nothing was applied (--check)\n`);
}

async function applyMigrations(db: Db): Promise<void> {
  const applied = await migrate(db);
  process.stdout.write(applied.length ? applied.map((n) => `applied  ${n}\n`).join("") : "nothing to apply: the store is up to date\n");
}

/**
 * `conveer backup` while a server on this host holds the data directory: the server dumps its store
 * (AdminService.BackupStore, the admin scope) and this writes the archive, with the side files
 * of the same data directory.
 */
async function backupThroughServer(config: Config, out: string, opts: { withMasterKey: boolean }): Promise<BackupResult> {
  const { url } = adminServer(config);
  process.stderr.write(`conveer: a server holds ${config.dataDir}: backing up through it (${url}); its calls wait while it dumps\n`);
  const t0 = performance.now();
  let rowCounts = "";
  let total = 0;
  const parts: Uint8Array[] = [];
  let got = 0;
  try {
    for await (const c of serverClient(AdminService, url, config).backupStore({})) {
      if (c.rowCounts) [rowCounts, total] = [c.rowCounts, Number(c.totalBytes)];
      if (c.data.length) (parts.push(c.data), (got += c.data.length));
    }
  } catch (err) {
    if (!(err instanceof ConnectError)) throw err;
    const hint =
      err.code === Code.Unavailable
        ? ` (nothing answered there: if the process holding ${config.dataDir} is a server, point the CLI at its HTTP port with --server http://HOST:PORT; if it is another command, wait for it to end)`
        : "";
    throw new Error(`backup through the server at ${url} failed: ${err.rawMessage}${hint}; nothing was written`, { cause: err });
  }
  if (!rowCounts || got !== total) throw new Error(`the server's dump ended short (${got} of ${total} bytes); nothing was written`);
  const r = await writeArchive(config.dataDir, out, { dump: Buffer.concat(parts), rowCounts }, opts);
  process.stderr.write(`conveer: ${got} bytes from the server in ${Math.round(performance.now() - t0)} ms\n`);
  return r;
}

function embeddedOnly(config: Config, command: string, hint: string): Config {
  if (config.databaseUrl) throw new Error(`${command} works on the embedded store, and DATABASE_URL is set (PostgreSQL): ${hint}`);
  return config;
}

/** Runs fn holding the data directory lock: refused while a server (or another command) uses the embedded store. */
async function offline<T>(config: Config, fn: () => Promise<T>): Promise<T> {
  const release = await holdDataDirLock(config.dataDir);
  try {
    return await fn();
  } finally {
    await release();
  }
}

async function migrateStore(config: Config, url: string): Promise<void> {
  const log = pino({ level: "warn" });
  const source = await openStore({ dataDir: config.dataDir, databaseUrl: "" }, log);
  const target = openPostgres({ url, max: 2, queryTimeoutMs: 600_000 });
  try {
    const applied = await migrate(target);
    process.stderr.write(`conveer: target migrated (${applied.length} migration(s) applied); copying in one transaction (a failure leaves it empty: fix and run again)\n`);
    const counts = await copyStore(source, target, (t, n) => process.stderr.write(`  ${t}: ${n} row(s)\n`));
    const w = Math.max(5, ...counts.map((c) => c.table.length));
    process.stdout.write(`${"TABLE".padEnd(w)}  EMBEDDED  POSTGRES\n`);
    for (const c of counts) process.stdout.write(`${c.table.padEnd(w)}  ${String(c.source).padStart(8)}  ${String(c.target).padStart(8)}\n`);
    process.stdout.write(`copied ${counts.reduce((a, c) => a + c.target, 0)} rows in ${counts.length} tables; row counts match\n`);
    process.stderr.write(
      `conveer: start with DATABASE_URL=${redact(url)} and the SAME master key: ${config.masterKey ? "CONVEER_MASTER_KEY as now" : `copy ${resolve(config.dataDir, "master.key")} to the new data directory, or set CONVEER_MASTER_KEY to its contents`} (the data keys in the store are wrapped by it). Every replica needs it\n`,
    );
  } finally {
    await target.close();
    await source.close();
  }
}

const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
