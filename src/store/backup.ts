/**
 * Backup and restore of the embedded store's data directory: PGlite's own dump of pgdata (a gzip
 * tar, taken after a CHECKPOINT inside one transaction: offline, or by the running server for
 * AdminService.BackupStore), beside the small files of the data directory (sandbox.json) and, only
 * when asked, master.key. The archive is one file:
 *   "conveer-backup 1\n" + one JSON line (the header: files as base64, the dump's length) + the dump.
 */
import { randomBytes } from "node:crypto";
import { open, readdir, readFile, rename, rm, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { PGlite } from "@electric-sql/pglite";
import type { StoreDump } from "./db.ts";
import { checkForDamage, recordRowCounts, rowCountsRecord, ROW_COUNTS_FILE, writeRowCounts } from "./pglite-damage.ts";
import { keepPrivate } from "./private-dir.ts";

const MAGIC = "conveer-backup 1\n";
/** Files of the data directory carried beside pgdata (master.key only with withMasterKey). */
const SIDE_FILES = ["sandbox.json"];
const MASTER_KEY = "master.key";

/** rowCounts: the row-count record taken with the dump, compared when restored (pglite-damage.ts). */
type Header = { createdAt: string; files: Record<string, string>; dumpBytes: number; rowCounts: string };

export type BackupResult = { bytes: number; files: string[] };

/**
 * A consistent dump of a PGlite store, open or not: inside one transaction (PGlite runs one at a
 * time, so every other call waits for it, as for any long transaction) a CHECKPOINT, pgdata as a
 * tar, and each table's row count, with no write between them. PGlite builds the tar on the
 * event loop, so the whole process pauses meanwhile (about 1 s with 100,000 accounts on 2 busy
 * cores); the gzip comes after, outside the transaction and off the event loop (libuv's threads).
 */
export async function dumpPglite(pg: PGlite): Promise<StoreDump> {
  const { tar, rowCounts } = await pg.transaction(async (tx) => {
    await tx.query("CHECKPOINT");
    const tar = new Uint8Array(await (await pg.dumpDataDir("none")).arrayBuffer());
    return { tar, rowCounts: await rowCountsRecord(tx) };
  });
  return { dump: await gzipAsync(tar), rowCounts };
}

const gzipAsync = promisify(gzip);

/** Writes the archive of dataDir to out (mode 0600, written aside then renamed into place). The caller holds the data directory lock. */
export async function backupDataDir(dataDir: string, out: string, opts: { withMasterKey: boolean }): Promise<BackupResult> {
  const pgdata = join(dataDir, "pgdata");
  const pg = await PGlite.create({ dataDir: pgdata });
  let dumped: StoreDump;
  try {
    await checkForDamage(pg, pgdata);
    dumped = await dumpPglite(pg);
    // The record a clean close leaves (checkForDamage took the last one away): the counts just
    // taken, since nothing wrote in between.
    writeRowCounts(pgdata, dumped.rowCounts);
  } finally {
    await pg.close();
  }
  return writeArchive(dataDir, out, dumped, opts);
}

/**
 * Writes a dump of the store in dataDir as an archive at out (mode 0600, written aside, fsynced,
 * then renamed into place), with the data directory's side files (master.key only when asked).
 */
export async function writeArchive(dataDir: string, out: string, dumped: StoreDump, opts: { withMasterKey: boolean }): Promise<BackupResult> {
  const files: Record<string, string> = {};
  for (const name of opts.withMasterKey ? [...SIDE_FILES, MASTER_KEY] : SIDE_FILES) {
    const content = await readFile(join(dataDir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (content) files[name] = content.toString("base64");
  }
  if (opts.withMasterKey && !files[MASTER_KEY]) throw new Error(`--with-master-key: there is no ${join(dataDir, MASTER_KEY)} (the key comes from CONVEER_MASTER_KEY? then keep that value safe instead)`);
  const { dump, rowCounts } = dumped;
  const header: Header = { createdAt: new Date().toISOString(), files, dumpBytes: dump.length, rowCounts };
  const tmp = `${out}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(Buffer.concat([Buffer.from(MAGIC + JSON.stringify(header) + "\n"), dump]));
    await fh.sync();
    await fh.close();
    await rename(tmp, out);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return { bytes: dump.length, files: Object.keys(files) };
}

/** Reads an archive and restores it into dataDir, which must hold no store (force: its pgdata and side files are replaced). The caller holds the lock. */
export async function restoreDataDir(archive: string, dataDir: string, opts: { force: boolean }): Promise<{ files: string[]; keptKey: boolean }> {
  const buf = await readFile(archive);
  if (buf.subarray(0, MAGIC.length).toString() !== MAGIC) throw new Error(`${archive} is not a conveer backup (made by \`conveer backup\`)`);
  const nl = buf.indexOf(10, MAGIC.length);
  const header = JSON.parse(buf.subarray(MAGIC.length, nl).toString()) as Header;
  const dump = buf.subarray(nl + 1);
  if (dump.length !== header.dumpBytes) throw new Error(`${archive} is cut short or damaged: the store dump holds ${dump.length} bytes, the header says ${header.dumpBytes}`);
  const present = (await readdir(dataDir).catch(() => [] as string[])).filter((f) => f !== "conveer.lock" && f !== "conveer.lock.break");
  if (present.length > 0 && !opts.force) {
    throw new Error(`the data directory ${dataDir} is not empty (${present.slice(0, 5).join(", ")}); restore into an empty or absent directory, or pass --force to replace its store`);
  }
  const pgdata = join(dataDir, "pgdata");
  if (opts.force) await rm(pgdata, { recursive: true, force: true });
  keepPrivate(pgdata);
  const pg = await PGlite.create({ dataDir: pgdata, loadDataDir: new Blob([dump]) });
  try {
    // The counts taken with the dump: a restored store that lacks a row is refused here.
    await writeFile(join(pgdata, ROW_COUNTS_FILE), header.rowCounts, { mode: 0o600 });
    await checkForDamage(pg, pgdata);
    await recordRowCounts(pg, pgdata);
  } finally {
    await pg.close();
  }
  for (const [name, b64] of Object.entries(header.files)) {
    await writeFile(join(dataDir, name), Buffer.from(b64, "base64"), { mode: name === MASTER_KEY ? 0o600 : 0o644 });
  }
  return { files: Object.keys(header.files), keptKey: !header.files[MASTER_KEY] && present.includes(MASTER_KEY) };
}
