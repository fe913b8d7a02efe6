import { existsSync } from "node:fs";
import { join } from "node:path";
import { PGlite, parse, protocol } from "@electric-sql/pglite";
import type { Logger } from "pino";
import type { Db, QueryResult, StoreHealth, Transaction } from "./db.ts";
import { storeFailureReason } from "./store-errors.ts";
import { healthWithin } from "./store-monitor.ts";
import { checkForDamage, recordRowCounts } from "./pglite-damage.ts";
import { dumpPglite } from "./backup.ts";
import { keepPrivate } from "./private-dir.ts";

/**
 * Opens (creating on first use, with page checksums) an embedded PGlite store in dataDir; no
 * dataDir = in memory. A data directory is checked for damage before use (pglite-damage.ts) and
 * records its row counts when closed, for the next open to compare.
 */
export async function openPglite(dataDir?: string, opts: { log?: Logger } = {}): Promise<Db> {
  if (!dataDir) return wrapPglite(await PGlite.create());
  keepPrivate(dataDir, opts.log);
  // Said before the wait: a new data directory takes PGlite's initdb (seconds, more on a busy host).
  const isNew = !existsSync(join(dataDir, "PG_VERSION"));
  opts.log?.info({ dataDir }, isNew ? "creating the embedded store (initdb: a few seconds)" : "opening the embedded store");
  // Checksums are PostgreSQL 18's default; asked for explicitly so a new data directory never lacks them.
  const pg = await PGlite.create({ dataDir, initDbStartParams: ["--data-checksums"] });
  try {
    const found = await checkForDamage(pg, dataDir);
    if (!found.checksums) {
      opts.log?.warn({ dataDir }, "the embedded store has no page checksums (made without them): a damaged page is noticed only by the row counts at start; move the data into a new data directory to get them");
    }
    if (!found.counted) opts.log?.info({ dataDir, tables: found.tables }, "the embedded store was not closed cleanly last time (or is new): pages read, row counts not compared");
  } catch (err) {
    await pg.close().catch(() => {});
    throw err;
  }
  const db = wrapPglite(pg);
  let closing: Promise<void> | undefined;
  return {
    ...db,
    close() {
      closing ??= (async () => {
        try {
          await recordRowCounts(pg, dataDir);
        } finally {
          await pg.close();
        }
      })();
      return closing;
    },
  };
}

/** Wraps an open PGlite instance (e.g. a clone of a migrated template) as a Db. */
export function wrapPglite(pg: PGlite): Db {
  const prepared = new Map<string, Prepared>();
  return {
    kind: "pglite",
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      if (params?.length) return pg._runExclusiveTransaction(() => pg._runExclusiveQuery(() => runPrepared<R>(pg, prepared, sql, params, true)));
      const r = await pg.query<R>(sql, params as unknown[]);
      return { rows: r.rows, rowCount: rowCount(r) };
    },
    transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
      return pg.transaction((t) =>
        fn({
          async query<R>(sql: string, params?: unknown[]) {
            if (params?.length) return pg._runExclusiveQuery(() => runPrepared<R>(pg, prepared, sql, params, false));
            const r = await t.query<R>(sql, params as unknown[]);
            return { rows: r.rows, rowCount: rowCount(r) };
          },
        } as Transaction),
      );
    },
    // In-process: there is no connection to lose, so a subscription is never re-established.
    async listen(channel, onPayload) {
      const unlisten = await pg.listen(channel, onPayload);
      return () => unlisten();
    },
    health: () => (pg.closed ? CLOSED : UP),
    async ping(timeoutMs) {
      if (pg.closed) return CLOSED;
      const check = pg.query("SELECT 1").then((): StoreHealth => UP, (err: unknown): StoreHealth => ({ ok: false, reason: storeFailureReason(err) }));
      // PGlite runs one statement at a time: a long transaction holds up the check.
      return healthWithin(check, timeoutMs, `the embedded store did not answer in ${timeoutMs} ms (busy with a long transaction)`);
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
    dumpEmbedded: () => dumpPglite(pg),
  };
}

/** A named prepared statement: its name and parameter types (from Describe, for PGlite's serializers). */
type Prepared = { name: string; types: number[] };

const { serialize } = protocol;

/**
 * One parameterized statement as a named prepared statement, in one exchange with the engine
 * (Bind, Describe, Execute, Sync in one message; Parse and Describe once per SQL text, on first
 * use). PGlite's own query() parses and plans every statement anew and makes five calls into the
 * engine for it: measured, that was most of a point lookup's cost. The caller holds PGlite's
 * query lock (and its transaction lock when outside a transaction), as query() does.
 */
async function runPrepared<R>(pg: PGlite, cache: Map<string, Prepared>, sql: string, params: unknown[], sync: boolean): Promise<QueryResult<R>> {
  let st = cache.get(sql);
  if (!st) {
    const name = `cv_${cache.size}`;
    const described = await pg.execProtocol(concat([serialize.parse({ name, text: sql }), serialize.describe({ type: "S", name }), serialize.sync()]), { syncToFs: false });
    st = { name, types: parse.parseDescribeStatementResults(described.messages) };
    cache.set(sql, st);
  }
  const { types } = st;
  const values = params.map((v, i) => (v === null || v === undefined ? null : (pg.serializers[types[i]] ?? String)(v)));
  const out = await pg.execProtocol(concat([serialize.bind({ statement: st.name, values }), serialize.describe({ type: "P" }), serialize.execute({}), serialize.sync()]), { syncToFs: sync });
  const r = parse.parseResults(out.messages, pg.parsers)[0] as { rows: R[]; fields: unknown[]; affectedRows?: number };
  return { rows: r.rows, rowCount: rowCount(r) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const UP: StoreHealth = Object.freeze({ ok: true });
const CLOSED: StoreHealth = Object.freeze({ ok: false, reason: "the store is closed" });

// PGlite reports affectedRows = 0 for a SELECT; pg's rowCount counts the rows returned.
function rowCount(r: { rows: unknown[]; fields: unknown[]; affectedRows?: number }): number {
  return r.fields.length > 0 ? r.rows.length : (r.affectedRows ?? 0);
}

