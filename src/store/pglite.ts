import { PGlite } from "@electric-sql/pglite";
import type { Db, Queryable, QueryResult } from "./db.ts";

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
    async listen(channel, onPayload) {
      const unlisten = await pg.listen(channel, onPayload);
      return () => unlisten();
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
  };
}

// PGlite reports affectedRows = 0 for a SELECT; pg's rowCount counts the rows returned.
function rowCount(r: { rows: unknown[]; fields: unknown[]; affectedRows?: number }): number {
  return r.fields.length > 0 ? r.rows.length : (r.affectedRows ?? 0);
}
