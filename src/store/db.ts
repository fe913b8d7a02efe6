/**
 * The store: one small interface over PostgreSQL (`pg`) and embedded PGlite, so every query,
 * migration and test runs on both. Query functions take a `Queryable` (the pool or a transaction)
 * as their first argument; transactions are opened at the edge (a handler or a scheduler step).
 */

/** Rows of a query, as the drivers give them (timestamptz → Date, int4 → number). */
export type QueryResult<R> = { rows: R[]; rowCount: number };

/** Anything that runs SQL: the database itself or an open transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/** A database: runs queries, opens transactions, and delivers NOTIFY payloads. */
export interface Db extends Queryable {
  /** "postgres" or "pglite": for the rare place that must know (tests, benchmarks, logs). */
  readonly kind: "postgres" | "pglite";
  /** Runs fn in a transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Subscribes to a NOTIFY channel; resolves to an unsubscribe function. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** Closes every connection. */
  close(): Promise<void>;
}
