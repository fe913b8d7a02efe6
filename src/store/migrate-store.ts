/**
 * Copies every table of one store into another, empty, store of the same schema (the embedded
 * store into PostgreSQL): tables in foreign-key order, rows in batches of BATCH as jsonb (so every
 * type round-trips through its own text form), all in ONE transaction on the target (a failure
 * leaves it empty: run again), with the tables' triggers off, then the sequences set to the source's
 * values and row counts compared.
 */
import { PGlite } from "@electric-sql/pglite";
import type { Db, Queryable } from "./db.ts";
import { migrate } from "./migrate.ts";
import { wrapPglite } from "./pglite.ts";

const BATCH = 1000;
/** Filled by migrate() on each side: versions are compared, rows are not copied. */
const SKIP = new Set(["schema_migrations"]);

export type TableCount = { table: string; source: number; target: number };

const q = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The public tables of db, each after every table it references (self-references ignored). */
export async function tablesInDependencyOrder(db: Queryable): Promise<string[]> {
  const tables = (await db.query<{ name: string }>("SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1")).rows.map((r) => r.name);
  const edges = (
    await db.query<{ child: string; parent: string }>(
      "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = 'public'",
    )
  ).rows;
  const unq = (s: string) => s.replace(/^public\./, "").replace(/^"(.*)"$/, "$1");
  const parents = new Map(tables.map((t) => [t, new Set<string>()]));
  for (const e of edges) if (unq(e.child) !== unq(e.parent)) parents.get(unq(e.child))?.add(unq(e.parent));
  const order: string[] = [];
  const visit = (t: string, path: Set<string>) => {
    if (order.includes(t)) return;
    if (path.has(t)) throw new Error(`the tables' foreign keys form a cycle through ${t}`);
    path.add(t);
    for (const p of parents.get(t) ?? []) visit(p, path);
    path.delete(t);
    order.push(t);
  };
  for (const t of tables) visit(t, new Set());
  return order;
}

async function count(db: Queryable, table: string): Promise<number> {
  return Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${q(table)}`)).rows[0].n);
}

/** The rows a freshly migrated store holds (singletons some migrations insert), per table: an in-memory PGlite migrated here. */
async function seededCounts(tables: string[]): Promise<Map<string, number>> {
  const fresh = wrapPglite(await PGlite.create());
  try {
    await migrate(fresh);
    const seeded = new Map<string, number>();
    for (const t of tables) seeded.set(t, await count(fresh, t));
    return seeded;
  } finally {
    await fresh.close();
  }
}

/** Refuses a target that holds more than migrations put there, or whose schema version differs from the source's. */
async function checkTarget(source: Db, target: Db, tables: string[], seeded: Map<string, number>): Promise<void> {
  const versions = async (db: Db) => (await db.query<{ v: number }>("SELECT version AS v FROM schema_migrations ORDER BY 1")).rows.map((r) => r.v).join(",");
  const [sv, tv] = [await versions(source), await versions(target)];
  if (sv !== tv) throw new Error(`the target's migrations (${tv}) differ from the source's (${sv}): run the same Conveer version on both`);
  for (const t of tables) {
    const n = await count(target, t);
    if (n !== (seeded.get(t) ?? 0)) throw new Error(`the target database is not empty: table ${t} holds ${n} row(s). migrate-store copies only into an empty database (create a new one)`);
  }
}

/** Copies source into target (both migrated); onTable reports progress. Returns the counts per table. */
export async function copyStore(source: Db, target: Db, onTable: (table: string, rows: number) => void = () => {}): Promise<TableCount[]> {
  const tables = (await tablesInDependencyOrder(source)).filter((t) => !SKIP.has(t));
  const seeded = await seededCounts(tables);
  await checkTarget(source, target, tables, seeded);
  await target.transaction(async (tx) => {
    // Rows are copied as they are: the tables' own triggers (counters, defaults, notifications) stay
    // off until the end of the copy (foreign keys are still checked); rows the migrations seeded give way to the source's.
    for (const t of tables) await tx.query(`ALTER TABLE ${q(t)} DISABLE TRIGGER USER`);
    for (const t of [...tables].reverse()) if (seeded.get(t)) await tx.query(`DELETE FROM ${q(t)}`);
    for (const t of tables) {
      let after = "(0,0)";
      let copied = 0;
      for (;;) {
        const { rows } = await source.query<{ ctid: string; row: unknown }>(`SELECT x.ctid::text AS ctid, to_jsonb(x) AS row FROM ${q(t)} x WHERE x.ctid > $1::tid ORDER BY x.ctid LIMIT ${BATCH}`, [after]);
        if (rows.length === 0) break;
        await tx.query(`INSERT INTO ${q(t)} SELECT * FROM jsonb_populate_recordset(NULL::${q(t)}, $1::jsonb)`, [JSON.stringify(rows.map((r) => r.row))]);
        copied += rows.length;
        after = rows[rows.length - 1].ctid;
      }
      onTable(t, copied);
    }
    const seqs = await source.query<{ name: string; last: string | null }>("SELECT sequencename AS name, last_value::text AS last FROM pg_sequences WHERE schemaname = 'public'");
    for (const s of seqs.rows) if (s.last !== null) await tx.query("SELECT setval($1::regclass, $2::bigint, true)", [q(s.name), s.last]);
    for (const t of tables) await tx.query(`ALTER TABLE ${q(t)} ENABLE TRIGGER USER`);
  });
  const counts: TableCount[] = [];
  for (const t of tables) counts.push({ table: t, source: await count(source, t), target: await count(target, t) });
  const off = counts.filter((c) => c.source !== c.target);
  if (off.length) throw new Error(`row counts differ after the copy: ${off.map((c) => `${c.table} ${c.source} → ${c.target}`).join(", ")}`);
  return counts;
}
