import { createHash } from "node:crypto";
import pg from "pg";
import type { Db, Queryable, QueryResult } from "./db.ts";

// int8 (counts, sums) as numbers: every int8 we store fits in 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/** Options for a PostgreSQL store. */
export type PostgresOptions = { url: string; max?: number; onError?: (err: Error) => void };

/** Opens a pooled PostgreSQL store. The pool reconnects by itself when the server comes back. */
export function openPostgres(opts: PostgresOptions): Db {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 20,
    connectionTimeoutMillis: 3000,
    // A database that stops answering without closing connections must not hang calls forever.
    query_timeout: 30_000,
    keepAlive: true,
    idleTimeoutMillis: 30000,
  });
  // An idle client losing its connection must not crash the process.
  pool.on("error", (err) => opts.onError?.(err));
  const listeners = new Map<string, Set<(p: string) => void>>();
  // Parameterized queries run as named prepared statements: PostgreSQL parses and plans each
  // once per connection instead of on every call (measured: ~2x the point-lookup rate).
  const names = new Map<string, string>();
  const statement = (text: string, values?: unknown[]): pg.QueryConfig | string => {
    if (!values || values.length === 0) return text;
    let name = names.get(text);
    if (!name) {
      name = `cv_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
      names.set(text, name);
    }
    return { name, text, values };
  };
  let listenClient: pg.Client | undefined;
  let listenConnecting: Promise<pg.Client> | undefined;
  let closed = false;

  async function listenConnection(): Promise<pg.Client> {
    if (listenClient) return listenClient;
    listenConnecting ??= (async () => {
      const c = new pg.Client({ connectionString: opts.url });
      c.on("notification", (n) => {
        for (const fn of listeners.get(n.channel) ?? []) fn(n.payload ?? "");
      });
      c.on("error", (err) => {
        opts.onError?.(err);
        listenClient = undefined;
        listenConnecting = undefined;
        c.end().catch(() => {});
        if (!closed) setTimeout(() => void resubscribe(), 1000).unref();
      });
      await c.connect();
      listenClient = c;
      return c;
    })().catch((err) => {
      listenConnecting = undefined;
      throw err;
    });
    return listenConnecting;
  }

  async function resubscribe(): Promise<void> {
    if (closed || listeners.size === 0) return;
    try {
      const c = await listenConnection();
      for (const ch of listeners.keys()) await c.query(`LISTEN ${quoteIdent(ch)}`);
    } catch (err) {
      opts.onError?.(err as Error);
      if (!closed) setTimeout(() => void resubscribe(), 1000).unref();
    }
  }

  const db: Db = {
    kind: "postgres",
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const r = await pool.query(statement(sql, params) as pg.QueryConfig);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const tx: Queryable = {
          async query<R>(sql: string, params?: unknown[]) {
            const r = await client.query(statement(sql, params) as pg.QueryConfig);
            return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
          },
        };
        const out = await fn(tx);
        await client.query("COMMIT");
        return out;
      } catch (err) {
        try {
          await client.query("ROLLBACK");
        } catch (e) {
          broken = e as Error;
        }
        throw err;
      } finally {
        client.release(broken);
      }
    },
    async listen(channel, onPayload) {
      let set = listeners.get(channel);
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
        const c = await listenConnection();
        await c.query(`LISTEN ${quoteIdent(channel)}`);
      }
      set.add(onPayload);
      return async () => {
        set.delete(onPayload);
        if (set.size === 0 && listeners.get(channel) === set) {
          listeners.delete(channel);
          await listenClient?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
        }
      };
    },
    async close() {
      closed = true;
      await listenClient?.end().catch(() => {});
      await pool.end();
    },
  };
  return db;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
