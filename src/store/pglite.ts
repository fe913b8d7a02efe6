import { PGlite } from "@electric-sql/pglite";
import type { Db, Queryable, QueryResult, StoreHealth } from "./db.ts";

/** Opens (creating on first use) an embedded PGlite store in dataDir; no dataDir = in memory. */
export async function openPglite(dataDir?: string): Promise<Db> {
  const pg = await PGlite.create(dataDir ? { dataDir } : {});
  return wrapPglite(pg);
}

/** Wraps an open PGlite instance (e.g. a clone of a migrated template) as a Db. */
export function wrapPglite(pg: PGlite): Db {
  return {
    kind: "pglite",
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const r = await pg.query<R>(sql, params as unknown[]);
      return { rows: r.rows, rowCount: rowCount(r) };
    },
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return pg.transaction((t) =>
        fn({
          async query<R>(sql: string, params?: unknown[]) {
            const r = await t.query<R>(sql, params as unknown[]);
            return { rows: r.rows, rowCount: rowCount(r) };
          },
        }),
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
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<StoreHealth>((resolve) => {
        // PGlite runs one statement at a time: a long transaction holds up the check.
        timer = setTimeout(() => resolve({ ok: false, reason: `the embedded store did not answer in ${timeoutMs} ms (busy with a long transaction)` }), timeoutMs);
      });
      try {
        return await Promise.race([pg.query("SELECT 1").then((): StoreHealth => UP, (err: Error): StoreHealth => ({ ok: false, reason: err.message })), late]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
  };
}

const UP: StoreHealth = Object.freeze({ ok: true });
const CLOSED: StoreHealth = Object.freeze({ ok: false, reason: "the store is closed" });

// PGlite reports affectedRows = 0 for a SELECT; pg's rowCount counts the rows returned.
function rowCount(r: { rows: unknown[]; fields: unknown[]; affectedRows?: number }): number {
  return r.fields.length > 0 ? r.rows.length : (r.affectedRows ?? 0);
}
