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
