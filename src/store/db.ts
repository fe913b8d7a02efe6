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

declare const inTransaction: unique symbol;

/**
 * An open transaction. A query function that locks rows (FOR UPDATE) takes a Transaction, not a
 * Queryable, so calling it on the pool (where the lock would end with the statement) does not
 * typecheck. Only Db.transaction makes one.
 */
export type Transaction = Queryable & { readonly [inTransaction]: true };

/** Whether the store answers: `ok`, or why not (shown by /healthz and the health service). */
export type StoreHealth = { ok: true } | { ok: false; reason: string };

/** Options of a NOTIFY subscription. */
export type ListenOptions = {
  /**
   * Called after the subscription was re-established on a new connection (the old one was lost):
   * notifications sent meanwhile were missed, so the subscriber re-reads what it waits for.
   */
  onResubscribe?: () => void;
};

/** A consistent dump of the embedded store: pgdata as a gzip tar, and each table's row count then (store/backup.ts). */
export type StoreDump = { dump: Uint8Array; rowCounts: string };

/** A database: runs queries, opens transactions, and delivers NOTIFY payloads. */
export interface Db extends Queryable {
  /** "postgres" or "pglite": for the rare place that must know (tests, benchmarks, logs). */
  readonly kind: "postgres" | "pglite";
  /** Runs fn in a transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /** Subscribes to a NOTIFY channel; resolves to an unsubscribe function. */
  listen(channel: string, onPayload: (payload: string) => void, options?: ListenOptions): Promise<() => Promise<void>>;
  /** The store's state as last seen (no I/O): down from the first failed check until one succeeds. */
  health(): StoreHealth;
  /** Asks the store for a sign of life, answering within timeoutMs on a path a busy pool cannot block. */
  ping(timeoutMs: number): Promise<StoreHealth>;
  /** Closes every connection. */
  close(): Promise<void>;
  /** The embedded store only: a consistent dump taken while it serves (calls wait for it). */
  dumpEmbedded?(): Promise<StoreDump>;
}

/**
 * A Db whose query and transaction are `own`'s and whose every other member is db's: how the store
 * wrappers (timed-db, traced-db) change how statements run and nothing else. Every member of Db
 * must be named here (the type says so), so one added later, optional or not, cannot be dropped by
 * a wrapper that forgot it.
 */
export function wrapDb(db: Db, own: Pick<Db, "query" | "transaction">): Db {
  const forwarded = {
    kind: db.kind,
    listen: db.listen.bind(db),
    health: db.health.bind(db),
    ping: db.ping.bind(db),
    close: db.close.bind(db),
    dumpEmbedded: db.dumpEmbedded?.bind(db),
  } satisfies { [K in Exclude<keyof Db, "query" | "transaction">]-?: unknown };
  return { ...forwarded, ...own } as Db;
}
