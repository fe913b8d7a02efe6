import { createHash } from "node:crypto";
import pg from "pg";
import { AppError } from "../errors.ts";
import { callDeadline } from "./call-deadline.ts";
import type { Db, ListenOptions, QueryResult, StoreHealth, Transaction } from "./db.ts";
import { isConnectionError } from "./pg-errors.ts";
import { createStoreMonitor } from "./store-monitor.ts";
import type { StoreMonitor } from "./store-monitor.ts";
import { poolBusy, poolDeadline, storeFailureReason, storeSilent, storeTlsRefused, storeUnreachable, storeUrlUnusable } from "./store-errors.ts";

// int8 (counts, sums) as numbers: every int8 we store fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/** Options for a PostgreSQL store. */
export type PostgresOptions = {
  url: string;
  /** Pooled connections (CONVEER_DB_POOL_SIZE). */
  max?: number;
  /** How long opening a connection may take (CONVEER_DB_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
  /** How long one query may go unanswered before its connection is dropped (CONVEER_DB_QUERY_TIMEOUT_MS). */
  queryTimeoutMs?: number;
  /** The longest wait for a pooled connection by work that has no deadline of its own (CONVEER_DB_POOL_WAIT_MS). */
  poolWaitMs?: number;
  /** A connection failed (logged by the caller; the pool replaces it). */
  onError?: (err: Error) => void;
  /** The store went down or came back. */
  onHealth?: (health: StoreHealth) => void;
};

/** The defaults of PostgresOptions. */
export const POSTGRES_DEFAULTS = { max: 20, connectTimeoutMs: 2000, queryTimeoutMs: 10_000, poolWaitMs: 30_000 } as const;

/** Everything one PostgreSQL store holds, built once by openPostgres and passed to the functions below. */
type PgContext = {
  readonly o: Required<Omit<PostgresOptions, "onError" | "onHealth">> & Pick<PostgresOptions, "onError" | "onHealth">;
  readonly pool: pg.Pool;
  /** A pg.Client whose connection attempts give up after connectTimeoutMs. */
  readonly Client: typeof pg.Client;
  readonly monitor: StoreMonitor;
  /** Prepared-statement names by SQL text. */
  readonly names: Map<string, string>;
  /** Clients whose connection failed or timed out: destroyed, not reused, when released. */
  readonly broken: WeakSet<pg.ClientBase>;
  /** Callers waiting for a pooled connection: failed at once when the store goes down. */
  readonly waiters: Set<Waiter>;
  readonly listen: ListenState;
  /** Queries waiting for an answer, and the timer that gives up on the silent ones. */
  readonly inFlight: Set<InFlight>;
  sweep?: NodeJS.Timeout;
  closed: boolean;
};

/**
 * Opens a pooled PostgreSQL store that survives its database: a lost connection fails only the
 * calls using it (UNAVAILABLE) and the pool replaces it; a silent database fails calls after
 * queryTimeoutMs; a busy pool answers RESOURCE_EXHAUSTED or, within a call's deadline,
 * DEADLINE_EXCEEDED; and a monitor notices the database's return, after which LISTEN
 * subscriptions are re-established and their subscribers told to re-read.
 */
export function openPostgres(opts: PostgresOptions): Db {
  const o = { ...POSTGRES_DEFAULTS, ...(Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as PostgresOptions) };
  class TimedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super({ ...(typeof config === "string" ? { connectionString: config } : config), connectionTimeoutMillis: o.connectTimeoutMs });
    }
  }
  // The URL is read once here (its sslrootcert and the like are files): a wrong one fails the open, named.
  try {
    new TimedClient(o.url);
  } catch (err) {
    throw storeUrlUnusable(err);
  }
  /**
   * A pooled client carries an 'error' listener for its whole life, from birth. pg emits 'error'
   * on a client whose connection drops; the pool listens only while a client is idle and drops
   * its listener as it hands a client over, before the caller can add one. A FATAL message
   * (57P01, a terminated backend) parsed in the same chunk as the ReadyForQuery that completed a
   * new connection was emitted in that gap, with no listener, and ended the process.
   */
  class PooledClient extends TimedClient {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      this.on("error", (err) => {
        ctx.broken.add(this);
        o.onError?.(err);
        ctx.monitor.suspect();
      });
    }
  }
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.max,
    Client: PooledClient,
    // No pool-level timer: a wait for a connection is bounded in acquire() by the caller's
    // deadline (or poolWaitMs), and a connection attempt by the client's own connect timeout.
    connectionTimeoutMillis: 0,
    keepAlive: true,
    idleTimeoutMillis: 30_000,
  });
  // The pool's own 'error' (an idle client lost) is also each client's, handled above.
  pool.on("error", () => {});
  const probe: { client?: pg.Client } = {};
  const ctx: PgContext = {
    o,
    pool,
    Client: TimedClient,
    monitor: createStoreMonitor({
      check: (signal) => probeOnce(ctx, probe, signal),
      checkTimeoutMs: o.connectTimeoutMs,
      onCheckFailed: (err) => o.onError?.(err as Error),
      onChange: (h) => {
        if (!h.ok) for (const w of [...ctx.waiters]) w.fail(storeUnreachable(h.reason));
        else void resubscribe(ctx, true);
        o.onHealth?.(h);
      },
    }),
    names: new Map(),
    broken: new WeakSet(),
    waiters: new Set(),
    listen: { channels: new Map() },
    inFlight: new Set(),
    closed: false,
  };

  return {
    kind: "postgres",
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const client = await acquire(ctx);
      try {
        return await runQuery<R>(ctx, client, sql, params);
      } finally {
        release(ctx, client);
      }
    },
    async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
      const client = await acquire(ctx);
      try {
        await runQuery(ctx, client, "BEGIN");
        const out = await fn({ query: (sql, params) => runQuery(ctx, client, sql, params) } as Transaction);
        await runQuery(ctx, client, "COMMIT");
        return out;
      } catch (err) {
        // A lost connection has rolled back on the server already; ROLLBACK would only wait.
        if (!ctx.broken.has(client)) await runQuery(ctx, client, "ROLLBACK").catch(() => ctx.broken.add(client));
        throw err;
      } finally {
        release(ctx, client);
      }
    },
    listen: (channel, onPayload, options) => subscribe(ctx, channel, onPayload, options),
    health: () => ctx.monitor.health(),
    ping: (timeoutMs) => ctx.monitor.ping(timeoutMs),
    async close() {
      if (ctx.closed) return;
      ctx.closed = true;
      ctx.monitor.stop();
      clearInterval(ctx.sweep);
      for (const w of [...ctx.waiters]) w.fail(storeUnreachable("the store is closing"));
      clearTimeout(ctx.listen.retry);
      await ctx.listen.client?.end().catch(() => {});
      await probe.client?.end().catch(() => {});
      await pool.end();
    },
  };
}

/**
 * A pooled client, waiting at most until the call's deadline (DEADLINE_EXCEEDED) or poolWaitMs
 * (RESOURCE_EXHAUSTED: the pool is busy, the store is not down). While the store is known to be
 * down, fails at once with UNAVAILABLE instead of queueing.
 */
function acquire(ctx: PgContext): Promise<pg.PoolClient> {
  const h = ctx.monitor.health();
  if (!h.ok) return Promise.reject(storeUnreachable(h.reason));
  if (ctx.closed) return Promise.reject(storeUnreachable("the store is closed"));
  const started = Date.now();
  const deadline = callDeadline();
  const byDeadline = deadline !== undefined && deadline - started < ctx.o.poolWaitMs;
  const limit = byDeadline ? deadline - started : ctx.o.poolWaitMs;
  if (limit <= 0) return Promise.reject(poolDeadline(0));
  // An idle connection is handed over at once: no wait to bound, so no timer.
  if (ctx.pool.idleCount > 0 && ctx.pool.waitingCount === 0) {
    return ctx.pool.connect().catch((err: unknown) => Promise.reject(translate(ctx, err)));
  }
  return new Promise((resolve, reject) => {
    const w: Waiter = {
      until: performance.now() + limit,
      expired: () => (byDeadline ? poolDeadline(Date.now() - started) : poolBusy(ctx.o.max, Date.now() - started)),
      fail(err) {
        if (!ctx.waiters.delete(w)) return;
        reject(err);
      },
    };
    ctx.waiters.add(w);
    armSweep(ctx);
    ctx.pool.connect().then(
      (client) => {
        // The caller gave up meanwhile: hand the connection straight back.
        if (!ctx.waiters.delete(w)) return release(ctx, client);
        resolve(client);
      },
      (err: unknown) => w.fail(translate(ctx, err) as Error),
    );
  });
}

/** A caller waiting for a pooled connection: failed by the sweep once `until` passes, or at once when the store goes down. */
type Waiter = { until: number; expired: () => Error; fail: (err: Error) => void };

/** Returns a client to the pool, or destroys it when its connection failed. */
function release(ctx: PgContext, client: pg.PoolClient): void {
  client.release(ctx.broken.has(client) || undefined);
}

/**
 * One query on a client, given up after queryTimeoutMs: the connection is then dropped, which
 * frees its pool slot. Queries in flight (and callers waiting for a connection) are kept in sets
 * swept by one coarse timer (a tenth of the timeout, at most 250 ms) rather than a timer each.
 */
function runQuery<R>(ctx: PgContext, client: pg.PoolClient, sql: string, params?: unknown[]): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const entry: InFlight = { since: performance.now(), client, reject };
    ctx.inFlight.add(entry);
    armSweep(ctx);
    client.query(statement(ctx, sql, params) as pg.QueryConfig).then(
      (r) => {
        ctx.inFlight.delete(entry);
        resolve({ rows: r.rows as R[], rowCount: r.rowCount ?? 0 });
      },
      (err: unknown) => {
        ctx.inFlight.delete(entry);
        reject(translate(ctx, err, client));
      },
    );
  });
}

/** A query waiting for its answer. */
type InFlight = { since: number; client: pg.PoolClient; reject: (err: Error) => void };

/** Starts the sweep of queries in flight and waiting callers, if it is not running; it stops itself once none are left. */
function armSweep(ctx: PgContext): void {
  if (ctx.sweep) return;
  const every = Math.min(250, Math.max(10, Math.floor(ctx.o.queryTimeoutMs / 10)));
  ctx.sweep = setInterval(() => {
    const now = performance.now();
    for (const w of ctx.waiters) if (now >= w.until) w.fail(w.expired());
    for (const q of ctx.inFlight) {
      if (now - q.since < ctx.o.queryTimeoutMs) continue;
      ctx.inFlight.delete(q);
      ctx.broken.add(q.client);
      q.reject(storeSilent(ctx.o.queryTimeoutMs));
      (q.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      ctx.monitor.suspect();
    }
    if (ctx.inFlight.size === 0 && ctx.waiters.size === 0) {
      clearInterval(ctx.sweep);
      ctx.sweep = undefined;
    }
  }, every);
  ctx.sweep.unref();
}

/**
 * Parameterized queries run as named prepared statements: PostgreSQL parses and plans each once
 * per connection instead of on every call (measured: ~2x the point-lookup rate).
 */
function statement(ctx: PgContext, text: string, values?: unknown[]): pg.QueryConfig | string {
  if (!values || values.length === 0) return text;
  let name = ctx.names.get(text);
  if (!name) {
    name = `cv_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    ctx.names.set(text, name);
  }
  return { name, text, values };
}

/** A driver error as the caller should see it: a lost or silent store becomes UNAVAILABLE (and marks the client broken). */
function translate(ctx: PgContext, err: unknown, client?: pg.ClientBase): unknown {
  const tls = storeTlsRefused(err);
  if (tls) return tls;
  if (err instanceof AppError || !isConnectionError(err)) return err;
  if (client) ctx.broken.add(client);
  ctx.monitor.suspect();
  const msg = (err as Error).message;
  if (/timeout expired/i.test(msg)) return storeSilent(ctx.o.connectTimeoutMs, "did not accept a connection");
  return storeUnreachable(storeFailureReason(err), err);
}

/** The monitor's check: SELECT 1 on a connection of its own, so a busy pool never looks like a dead store. */
async function probeOnce(ctx: PgContext, probe: { client?: pg.Client }, signal: AbortSignal): Promise<void> {
  if (ctx.closed) throw new Error("the store is closed");
  let c = probe.client;
  const drop = () => {
    if (probe.client === c) probe.client = undefined;
    (c as unknown as { connection?: { stream?: { destroy(): void } } } | undefined)?.connection?.stream?.destroy();
  };
  signal.addEventListener("abort", drop, { once: true });
  try {
    if (!c) {
      c = new ctx.Client({ connectionString: ctx.o.url });
      c.on("error", drop);
      probe.client = c;
      await c.connect();
    }
    await c.query("SELECT 1");
  } catch (err) {
    drop();
    throw err;
  } finally {
    signal.removeEventListener("abort", drop);
  }
}

/** The one LISTEN connection and the subscriptions it carries. */
type ListenState = {
  client?: pg.Client;
  connecting?: Promise<pg.Client>;
  retry?: NodeJS.Timeout;
  channels: Map<string, Set<Subscriber>>;
};
type Subscriber = { onPayload: (payload: string) => void; onResubscribe?: () => void };

/** Subscribes to a channel on the LISTEN connection; resolves to the unsubscribe function. */
async function subscribe(ctx: PgContext, channel: string, onPayload: (p: string) => void, options?: ListenOptions): Promise<() => Promise<void>> {
  const L = ctx.listen;
  let set = L.channels.get(channel);
  const sub: Subscriber = { onPayload, onResubscribe: options?.onResubscribe };
  if (!set) {
    set = new Set();
    L.channels.set(channel, set);
    try {
      const c = await listenConnection(ctx);
      await c.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (err) {
      L.channels.delete(channel);
      throw translate(ctx, err);
    }
  }
  set.add(sub);
  return async () => {
    set.delete(sub);
    if (set.size === 0 && L.channels.get(channel) === set) {
      L.channels.delete(channel);
      await L.client?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
    }
  };
}

/** The LISTEN connection, opened on first use; a lost one is replaced and its channels listened to again. */
function listenConnection(ctx: PgContext): Promise<pg.Client> {
  const L = ctx.listen;
  if (L.client) return Promise.resolve(L.client);
  L.connecting ??= (async () => {
    const c = new ctx.Client({ connectionString: ctx.o.url });
    c.on("notification", (n) => {
      for (const s of L.channels.get(n.channel) ?? []) s.onPayload(n.payload ?? "");
    });
    c.on("error", (err) => {
      ctx.o.onError?.(err);
      if (L.client === c) L.client = undefined;
      c.end().catch(() => {});
      ctx.monitor.suspect();
      scheduleResubscribe(ctx);
    });
    await c.connect();
    L.client = c;
    return c;
  })().finally(() => {
    L.connecting = undefined;
  });
  return L.connecting;
}

function scheduleResubscribe(ctx: PgContext): void {
  const L = ctx.listen;
  if (ctx.closed || L.retry || L.channels.size === 0) return;
  L.retry = setTimeout(() => {
    L.retry = undefined;
    void resubscribe(ctx, false);
  }, 1000);
  L.retry.unref();
}

/**
 * Listens to every channel again on a fresh connection (fresh: true replaces a live one, which a
 * silent outage may have left half-dead), then tells each subscriber to re-read what it waits
 * for, since notifications sent meanwhile were lost.
 */
async function resubscribe(ctx: PgContext, fresh: boolean): Promise<void> {
  const L = ctx.listen;
  if (ctx.closed || L.channels.size === 0) return;
  if (fresh && L.client) {
    const old = L.client;
    L.client = undefined;
    old.removeAllListeners("notification");
    old.on("error", () => {});
    old.end().catch(() => {});
  }
  try {
    const c = await listenConnection(ctx);
    for (const ch of L.channels.keys()) await c.query(`LISTEN ${quoteIdent(ch)}`);
  } catch (err) {
    ctx.o.onError?.(err as Error);
    scheduleResubscribe(ctx);
    return;
  }
  for (const set of L.channels.values()) for (const s of set) s.onResubscribe?.();
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
