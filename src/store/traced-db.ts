/**
 * The store under tracing: every query (and transaction) made inside a traced call is a span named
 * by a short summary of its statement ("SELECT accounts", "UPDATE warming_tasks"). Neither the SQL
 * text nor its parameters are recorded. Queries outside a trace (the warming worker's claims, the
 * monitor's checks) make no spans of their own: they would be traces of one span each.
 */
import type { Span } from "@opentelemetry/api";
import { CLIENT, INTERNAL, context, failSpan, trace, tracer } from "../telemetry/tracing.ts";
import { wrapDb } from "./db.ts";
import type { Db, Queryable, QueryResult, Transaction } from "./db.ts";

/** The Db with a span per query inside traced calls; every other member is the Db's own. */
export function tracedDb(db: Db): Db {
  const system = db.kind === "postgres" ? "postgresql" : "pglite";
  const summaries = new Map<string, string>();
  const traced = (q: Queryable) =>
    function query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      if (!trace.getSpan(context.active())) return q.query<R>(sql, params);
      let summary = summaries.get(sql);
      if (summary === undefined) {
        summary = summarize(sql);
        if (summaries.size < 10_000) summaries.set(sql, summary);
      }
      const span = tracer.startSpan(summary, { kind: CLIENT, attributes: { "db.system.name": system, "db.query.summary": summary } });
      return context.with(trace.setSpan(context.active(), span), () => q.query<R>(sql, params)).then(
        (r) => endWith(span, r),
        (err: unknown) => {
          failSpan(span, err);
          span.end();
          throw err;
        },
      );
    };
  return wrapDb(db, {
    query: traced(db),
    transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
      if (!trace.getSpan(context.active())) return db.transaction(fn);
      const span = tracer.startSpan("transaction", { kind: INTERNAL, attributes: { "db.system.name": system } });
      return context.with(trace.setSpan(context.active(), span), () => db.transaction((tx) => fn({ query: traced(tx) } as Transaction))).then(
        (out) => endWith(span, out),
        (err: unknown) => {
          failSpan(span, err);
          span.end();
          throw err;
        },
      );
    },
  });
}

function endWith<T>(span: Span, out: T): T {
  span.end();
  return out;
}

const KEYWORDS = /^\s*(?:--[^\n]*\n\s*)*(SELECT|INSERT|UPDATE|DELETE|WITH|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|LOCK|NOTIFY|LISTEN|UNLISTEN)\b/i;
const TABLE = /\b(?:FROM|INTO|UPDATE|JOIN)\s+("?[a-z_][a-z0-9_]*"?)/i;

/**
 * "SELECT accounts": the statement's first keyword and the first table it names, taken from the
 * SQL text only (never its values), so a span says what kind of query ran without what it held.
 */
export function summarize(sql: string): string {
  const op = KEYWORDS.exec(sql)?.[1]?.toUpperCase() ?? "QUERY";
  if (op === "BEGIN" || op === "COMMIT" || op === "ROLLBACK") return op;
  const table = TABLE.exec(sql)?.[1]?.replaceAll('"', "");
  return table ? `${op} ${table}` : op;
}
