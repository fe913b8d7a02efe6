import type { Queryable } from "../store/db.ts";

/**
 * The audit log: one row per secret read or write, written by the domain that does it in the same
 * transaction as the thing it records (so a rolled-back write leaves no entry, and no committed
 * write lacks one). Read by AdminService.ListAuditEntries and `conveer audit`.
 */

/** The stable names of what is audited. */
export const AUDIT_ACTIONS = [
  "credentials.read",
  "proxy_password.read",
  "account.create",
  "account.import",
  "account.status",
  "account.credentials_update",
  "account.delete",
  "proxy.add",
  "proxy.remove",
  "token.create",
  "token.revoke",
  "keys.rotate",
  "keys.rotate_master",
  "store.backup",
  "warming.start",
  "warming.pause",
  "warming.resume",
  "warming.stop",
] as const;

/** One of AUDIT_ACTIONS. */
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Who did it: the token's name ("open-mode", or a system name for the system's own work) and the caller's address. */
export type Actor = { name: string; peer: string };

/** What is recorded: the action, and what it concerned (each "" when nothing). */
export type AuditEvent = { action: AuditAction; accountId?: string; target?: string; detail?: string };

/** An audit_log row, as stored. */
export type AuditRow = { id: string; at: Date; actor: string; peer: string; action: string; account_id: string; target: string; detail: string };

/** Records one event; `q` is the transaction of the write it records. */
export async function recordAudit(q: Queryable, who: Actor, e: AuditEvent): Promise<void> {
  await q.query("INSERT INTO audit_log (actor, peer, action, account_id, target, detail) VALUES ($1, $2, $3, $4, $5, $6)", [
    who.name,
    who.peer,
    e.action,
    e.accountId ?? "",
    e.target ?? "",
    (e.detail ?? "").slice(0, 2000),
  ]);
}

/** The filter of a listing: each "" (or undefined) when unused; `action` exact, or a prefix ending in ".". */
export type AuditFilter = { actor: string; action: string; accountId: string; after?: Date; before?: Date };

/** The WHERE conditions of a filter, their parameters appended to `params`. */
function filterWhere(f: AuditFilter, params: unknown[]): string[] {
  const where: string[] = [];
  if (f.actor) where.push(`actor = $${params.push(f.actor)}`);
  if (f.action.endsWith(".")) where.push(`action LIKE $${params.push(f.action.replace(/[\\%_]/g, (c) => "\\" + c) + "%")} ESCAPE '\\'`);
  else if (f.action) where.push(`action = $${params.push(f.action)}`);
  if (f.accountId) where.push(`account_id = $${params.push(f.accountId)}`);
  if (f.after) where.push(`at >= $${params.push(f.after)}`);
  if (f.before) where.push(`at < $${params.push(f.before)}`);
  return where;
}

/** One page, newest first, of entries older than `beforeId` (keyset on the id: "" for the first page). */
export async function listAudit(q: Queryable, f: AuditFilter, beforeId: string, limit: number): Promise<AuditRow[]> {
  const params: unknown[] = [];
  const where = filterWhere(f, params);
  if (beforeId) where.push(`audit_log.id < $${params.push(beforeId)}::bigint`);
  const sql = `SELECT id::text AS id, at, actor, peer, action, account_id, target, detail FROM audit_log ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY audit_log.id DESC LIMIT $${params.push(limit)}`;
  return (await q.query<AuditRow>(sql, params)).rows;
}

/** How many entries match a filter. */
export async function countAudit(q: Queryable, f: AuditFilter): Promise<number> {
  const params: unknown[] = [];
  const where = filterWhere(f, params);
  const r = await q.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_log ${where.length ? "WHERE " + where.join(" AND ") : ""}`, params);
  return Number(r.rows[0]?.n ?? 0);
}
