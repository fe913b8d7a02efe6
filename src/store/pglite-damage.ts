/**
 * Damage detection for the embedded store's data directory. Two layers:
 * - page checksums (initdb --data-checksums, PostgreSQL 18's default, asked for explicitly): a page
 *   whose bytes changed fails when read ("invalid page in block N"), so damage is an error, never
 *   quietly wrong rows;
 * - a row-count record: a clean close writes each table's row count to ROW_COUNTS_FILE in the data
 *   directory; the next open counts again and refuses to start on any difference. This catches what
 *   checksums cannot: a page that became all zeros (PostgreSQL takes a zeroed page for a valid empty
 *   one) or a relation file cut short, which would silently drop rows.
 * Counting reads every table page at open, so heap pages that fail their checksum refuse the start
 * too, even after a crash (when there is no record to compare with).
 */
import fs from "node:fs";
import path from "node:path";
import type { PGlite } from "@electric-sql/pglite";

/** The row-count record's file name, inside the PGlite data directory (it travels with the data). */
export const ROW_COUNTS_FILE = "conveer-row-counts.json";

type RowCounts = { version: 1; tables: Record<string, number> };

/** What opening found; `checksums` false means damage to a page goes unnoticed until the counts differ. */
export type DamageCheck = { checksums: boolean; counted: boolean; tables: number };

/** Every table of the public schema with its row count (a full read of each table's pages). */
async function countRows(pg: Pick<PGlite, "query">): Promise<Record<string, number>> {
  const tables = await pg.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
  );
  const counts: Record<string, number> = {};
  for (const { name } of tables.rows) {
    try {
      const r = await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM public."${name.replace(/"/g, '""')}"`);
      counts[name] = r.rows[0].n;
    } catch (err) {
      throw new Error(`reading table ${name} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  return counts;
}

function damaged(dataDir: string, what: string, override = ""): Error {
  return new Error(
    `the embedded store in ${dataDir} is damaged: ${what}. Restore it from a backup (the whole CONVEER_DATA_DIR, ` +
      `so the store, master.key and sandbox.json stay consistent)${override}`,
  );
}

/**
 * Runs at open, before anything else touches the store: reads every table, compares the counts
 * with the record of the last clean close (if any), then deletes the record so that a crash cannot
 * leave a stale one. Throws an Error naming the data directory and the fix on any damage.
 */
export async function checkForDamage(pg: PGlite, dataDir: string): Promise<DamageCheck> {
  const checksums = (await pg.query<{ data_checksums: string }>("SHOW data_checksums")).rows[0]?.data_checksums === "on";
  const file = path.join(dataDir, ROW_COUNTS_FILE);
  let recorded: RowCounts | undefined;
  try {
    recorded = JSON.parse(fs.readFileSync(file, "utf8")) as RowCounts;
    if (recorded?.version !== 1 || typeof recorded.tables !== "object" || recorded.tables === null) throw new Error("not a version 1 record");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw damaged(dataDir, `its row-count record ${file} cannot be read (${(err as Error).message})`, `, or delete ${file} to start without comparing row counts`);
    }
    recorded = undefined;
  }
  let counts: Record<string, number>;
  try {
    counts = await countRows(pg);
  } catch (err) {
    throw damaged(dataDir, (err as Error).message);
  }
  if (recorded) {
    const lost: string[] = [];
    for (const [table, n] of Object.entries(recorded.tables)) {
      if (counts[table] !== n) lost.push(`table ${table} has ${counts[table] ?? "no"} rows, ${n} when it was last closed cleanly`);
    }
    if (lost.length) {
      throw damaged(
        dataDir,
        `${lost.join("; ")} (a page was lost: zeroed or cut off)`,
        `. To start anyway with the rows that are left, delete ${file}`,
      );
    }
    fs.rmSync(file);
  }
  return { checksums, counted: recorded !== undefined, tables: Object.keys(counts).length };
}

/** Each table's row count as the record file holds it (one JSON line); `pg` may be an open transaction of PGlite. */
export async function rowCountsRecord(pg: Pick<PGlite, "query">): Promise<string> {
  const record: RowCounts = { version: 1, tables: await countRows(pg) };
  return JSON.stringify(record) + "\n";
}

/**
 * Runs at a clean close, after the last write: records every table's row count (written aside,
 * fsynced, renamed into place) for the next open to compare.
 */
export async function recordRowCounts(pg: PGlite, dataDir: string): Promise<void> {
  writeRowCounts(dataDir, await rowCountsRecord(pg));
}

/** Writes a record of rowCountsRecord (aside, fsynced, renamed into place) for the next open to compare. */
export function writeRowCounts(dataDir: string, record: string): void {
  const file = path.join(dataDir, ROW_COUNTS_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeFileSync(fd, record);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const d = fs.openSync(dataDir, "r");
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}
