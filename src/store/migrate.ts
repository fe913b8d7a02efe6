import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Db } from "./db.ts";

const migrationsDir = fileURLToPath(new URL("./migrations/", import.meta.url));
// Any constant: every replica takes the same transaction-scoped advisory lock, so two that start
// at once apply each migration exactly once.
const MIGRATION_LOCK = 7_315_402_11;

/** A migration file: "NNN_name.sql". */
export type Migration = { version: number; name: string; sql: string };

/** Reads the migration files in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(migrationsDir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => ({
      version: Number.parseInt(f, 10),
      name: f.replace(/\.sql$/, ""),
      sql: await readFile(migrationsDir + f, "utf8"),
    })),
  );
}

/** Applies every migration not yet recorded, each in its own transaction; returns the names applied. */
export async function migrate(db: Db): Promise<string[]> {
  const applied: string[] = [];
  for (const m of await loadMigrations()) {
    const did = await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await tx.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const { rowCount } = await tx.query("SELECT 1 FROM schema_migrations WHERE version = $1", [m.version]);
      if (rowCount > 0) return false;
      for (const stmt of splitStatements(m.sql)) await tx.query(stmt);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      return true;
    });
    if (did) applied.push(m.name);
  }
  return applied;
}

/** The store's migrations: those recorded as applied (with any this code does not know: a newer release's), and those not yet applied. */
export async function migrationStatus(db: Db): Promise<{ applied: { version: number; name: string; known: boolean }[]; pending: Migration[] }> {
  const known = await loadMigrations();
  const { rows: [t] } = await db.query<{ exists: boolean }>("SELECT to_regclass('schema_migrations') IS NOT NULL AS exists");
  const rows = t.exists ? (await db.query<{ version: number; name: string }>("SELECT version, name FROM schema_migrations ORDER BY version")).rows : [];
  const done = new Set(rows.map((r) => r.version));
  return {
    applied: rows.map((r) => ({ ...r, known: known.some((m) => m.version === r.version) })),
    pending: known.filter((m) => !done.has(m.version)),
  };
}

/**
 * What in a migration breaks code of the previous release still running on the schema during a
 * rolling upgrade: a plain text check of each statement (comments left out) for DROP (a table, a
 * column, a default..., or one of `uniqueIndexes`: see uniqueIndexesOf), RENAME, a column's type
 * changed, SET NOT NULL, and a NOT NULL column added without a default (the old code's INSERTs
 * leave it out). Empty: additive (new tables, columns with defaults, indexes, functions replaced in
 * place), safe while older hosts run. It is no proof:
 * a new constraint on an existing table can also reject the old code's writes; read the migration.
 */
export function rollingUpgradeHazards(sql: string, uniqueIndexes: ReadonlySet<string>): string[] {
  const found: string[] = [];
  for (const stmt of splitStatements(sql)) {
    const s = stmt.replace(/--[^\n]*/g, " ").replace(/\s+/g, " ").trim();
    const hit = HAZARDS.find(([test]) => test(s, uniqueIndexes));
    if (hit) found.push(`${hit[1]}: ${s.length > 100 ? `${s.slice(0, 97)}...` : s}`);
  }
  return found;
}

/** The unique indexes the migrations create (CREATE UNIQUE INDEX): an older host's ON CONFLICT may name one, so dropping one is a hazard. */
export function uniqueIndexesOf(migrations: readonly { sql: string }[]): Set<string> {
  const out = new Set<string>();
  for (const m of migrations) for (const x of m.sql.matchAll(/\bCREATE UNIQUE INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?"?(\w+)"?/gi)) out.add(x[1].toLowerCase());
  return out;
}

/** The index names a DROP INDEX statement drops. */
const droppedIndexes = (s: string) => (/^DROP INDEX (?:CONCURRENTLY )?(?:IF EXISTS )?(.+?)(?: CASCADE| RESTRICT)?;?$/i.exec(s)?.[1] ?? "").split(",").map((n) => n.trim().replace(/^public\./i, "").replace(/"/g, "").toLowerCase());

const HAZARDS: [(stmt: string, uniqueIndexes: ReadonlySet<string>) => boolean, string][] = [
  // An index changes no query's answer: dropping one is safe, but for a unique one (an older
  // host's ON CONFLICT may name it).
  [(s) => /\bDROP\b/i.test(s) && !/^DROP INDEX\b/i.test(s), "drops"],
  [(s, unique) => /^DROP INDEX\b/i.test(s) && droppedIndexes(s).some((n) => unique.has(n)), "drops a unique index"],
  [(s) => /\bRENAME\b/i.test(s), "renames"],
  [(s) => /\bALTER COLUMN \S+ (SET DATA )?TYPE\b/i.test(s), "changes a column's type"],
  [(s) => /\bSET NOT NULL\b/i.test(s), "makes a column NOT NULL"],
  [(s) => s.split(/\bADD COLUMN\b/i).slice(1).some((c) => /\bNOT NULL\b/i.test(c) && !/\bDEFAULT\b/i.test(c)), "adds a NOT NULL column without a default"],
];

/** Splits a migration into statements on ";" at line ends, keeping $$-quoted bodies whole. */
function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inDollar = false;
  for (const line of sql.split("\n")) {
    if (/^\s*--/.test(line) && !inDollar) continue;
    cur += line + "\n";
    if ((line.match(/\$\$/g)?.length ?? 0) % 2 === 1) inDollar = !inDollar;
    if (!inDollar && /;\s*$/.test(line)) {
      out.push(cur.trim());
      cur = "";
    }
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
