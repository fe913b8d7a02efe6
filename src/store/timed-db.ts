import { wrapDb } from "./db.ts";
import type { Db, Queryable, Transaction } from "./db.ts";

/**
 * The one place every query of a running system passes (pool and transactions alike): each is
 * timed and reported under a short operation name, so a histogram by operation stays small.
 */

/** Reports one query's operation name and duration in seconds. */
export type QueryObserver = (operation: string, seconds: number) => void;

/** The db with every query (and every statement of a transaction) timed. */
export function timedDb(db: Db, observe: QueryObserver): Db {
  const names = new Map<string, string>();
  const timed = (q: Queryable): Queryable["query"] =>
    async function query(sql, params) {
      const t0 = performance.now();
      try {
        return await q.query(sql, params);
      } finally {
        observe(cachedName(names, sql), (performance.now() - t0) / 1000);
      }
    };
  return wrapDb(db, {
    query: timed(db),
    transaction: (fn) => db.transaction((tx) => fn({ query: timed(tx) } as Transaction)),
  });
}

// The SQL texts are the code's own (few hundred at most); the cap only guards against a caller
// that builds SQL with values in it.
const MAX_NAMES = 5000;

function cachedName(names: Map<string, string>, sql: string): string {
  let name = names.get(sql);
  if (name === undefined) {
    name = operationOf(sql);
    if (names.size < MAX_NAMES) names.set(sql, name);
  }
  return name;
}

/**
 * A statement's operation: its verb and the first table it writes (or reads), lower case:
 * "select accounts", "update warming_tasks", "begin". A WITH query is named by the first table
 * it changes, or reads when it changes none.
 */
export function operationOf(sql: string): string {
  const s = sql.replace(/--[^\n]*/g, " ").replace(/\s+/g, " ").trim().toLowerCase();
  const verb = /^(\w+)/.exec(s)?.[1] ?? "other";
  if (verb === "select" || verb === "with") {
    // Not a row lock's "FOR [NO KEY] UPDATE SKIP LOCKED" nor an upsert's "DO UPDATE SET": they were "update skip".
    const w = /(?<!\b(?:for|key|do) )\b(insert into|update|delete from)\s+([a-z_][a-z0-9_.]*)/.exec(s);
    if (verb === "with" && w) return `${w[1].split(" ")[0]} ${w[2]}`;
    const f = /\bfrom\s+([a-z_][a-z0-9_.]*)/.exec(s);
    return f ? `select ${f[1]}` : "select";
  }
  if (verb === "insert") return named("insert", /^insert into\s+([a-z_][a-z0-9_.]*)/.exec(s));
  if (verb === "update") return named("update", /^update\s+([a-z_][a-z0-9_.]*)/.exec(s));
  if (verb === "delete") return named("delete", /^delete from\s+([a-z_][a-z0-9_.]*)/.exec(s));
  if (["begin", "commit", "rollback", "savepoint", "release", "listen", "unlisten", "set", "lock", "create", "alter", "drop"].includes(verb)) return verb;
  return "other";
}

const named = (verb: string, m: RegExpExecArray | null) => (m ? `${verb} ${m[1]}` : verb);
