import type { Actor } from "../audit/audit-log.ts";
import type { Queryable, Transaction } from "../store/db.ts";

/** An accounts row, as stored. */
export type AccountRow = {
  id: string;
  platform: string;
  login: string;
  status: number;
  status_reason: string;
  secrets: string;
  key_id: string;
  has_phone: boolean;
  labels: Record<string, string>;
  created_at: Date;
  updated_at: Date;
};

/** A status history row. */
export type StatusHistoryRow = { from_status: number | null; to_status: number; reason: string; author: string; changed_at: Date };

const PUBLIC_COLUMNS = "id, platform, login, status, status_reason, has_phone, labels, created_at, updated_at";
const COLUMNS = `${PUBLIC_COLUMNS}, secrets, key_id`;

/**
 * Inserts an account, its first history entry and the audit record of its creation, in one
 * statement (one round trip, atomic without a transaction of its own); throws the driver's 23505
 * on a duplicate login.
 */
export async function insertAccount(q: Queryable, row: Omit<AccountRow, "created_at" | "updated_at">, who: Actor, audit: { action: string; detail: string }): Promise<AccountRow> {
  const r = await q.query<AccountRow>(
    `WITH ins AS (
       INSERT INTO accounts (id, platform, login, status, status_reason, secrets, key_id, has_phone, labels)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${COLUMNS}
     ), hist AS (
       INSERT INTO account_status_history (account_id, from_status, to_status, reason, author) SELECT id, NULL, status, status_reason, $10 FROM ins
     ), audit AS (
       INSERT INTO audit_log (actor, peer, action, account_id, target, detail) SELECT $10, $11, $12, id, '', $13 FROM ins
     )
     SELECT * FROM ins`,
    [row.id, row.platform, row.login, row.status, row.status_reason, row.secrets, row.key_id, row.has_phone, JSON.stringify(row.labels), who.name, who.peer, audit.action, audit.detail.slice(0, 2000)],
  );
  return r.rows[0];
}

/** A credentials read to audit: which account, read by whom. */
export type AuditedRead = { id: string; name: string; peer: string };

/**
 * Accounts by id with their sealed secrets, and in the same statement (one round trip, no
 * transaction of its own) an audit record of each read, in the order asked: no row read, no
 * record; a failed record, no row. A batch of GetCredentials calls costs one statement.
 */
export async function readSecretsAudited(q: Queryable, reads: readonly AuditedRead[]): Promise<Map<AuditedRead, AccountRow>> {
  const r = await q.query<AccountRow>(
    `WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(id, actor, peer, ord)),
     cur AS (SELECT ${COLUMNS} FROM accounts WHERE id = ANY($1::text[])),
     audit AS (INSERT INTO audit_log (actor, peer, action, account_id, target, detail)
       SELECT k.actor, k.peer, 'credentials.read', k.id, '', '' FROM k JOIN cur ON cur.id = k.id ORDER BY k.ord)
     SELECT * FROM cur`,
    [reads.map((x) => x.id), reads.map((x) => x.name), reads.map((x) => x.peer)],
  );
  const byId = new Map(r.rows.map((row) => [row.id, row]));
  return new Map(reads.flatMap((x) => (byId.has(x.id) ? [[x, byId.get(x.id) as AccountRow]] : [])));
}

/** One account by id, locked until the transaction ends (for a status or secrets change), or undefined. */
export async function lockAccount(tx: Transaction, id: string): Promise<AccountRow | undefined> {
  const r = await tx.query<AccountRow>(`SELECT ${COLUMNS} FROM accounts WHERE id = $1 FOR UPDATE`, [id]);
  return r.rows[0];
}

/** The non-secret columns of an account row. */
export type PublicAccountRow = Omit<AccountRow, "secrets" | "key_id">;

/** One account without its sealed secrets (the hot GetAccount path reads less). */
export async function getPublicAccount(q: Queryable, id: string): Promise<PublicAccountRow | undefined> {
  const r = await q.query<PublicAccountRow>(`SELECT ${PUBLIC_COLUMNS} FROM accounts WHERE id = $1`, [id]);
  return r.rows[0];
}

/** Accounts without their sealed secrets by id (one statement for a batch of GetAccount reads); missing ids are absent. */
export async function getPublicAccounts(q: Queryable, ids: readonly string[]): Promise<Map<string, PublicAccountRow>> {
  const r = await q.query<PublicAccountRow>(`SELECT ${PUBLIC_COLUMNS} FROM accounts WHERE id = ANY($1::text[])`, [ids]);
  return new Map(r.rows.map((row) => [row.id, row]));
}

/**
 * Changes an account's status to `to` when its status is one of `from`, with the history entry
 * and the audit record (account.status, "FROM -> TO" in `names` then `suffix`), in one statement
 * that locks the row: one round trip, atomic without a transaction of its own. Answers the status
 * it found and whether it changed it; undefined when there is no such account.
 */
export async function changeStatus(
  q: Queryable,
  id: string,
  change: { to: number; from: number[]; reason: string; names: string[]; suffix: string },
  who: Actor,
): Promise<{ status: number; changed: boolean } | undefined> {
  const r = await q.query<{ status: number; changed: boolean }>(
    `WITH cur AS (SELECT status FROM accounts WHERE id = $1 FOR UPDATE),
     upd AS (
       UPDATE accounts a SET status = $2::smallint, status_reason = $3, updated_at = now()
       FROM cur WHERE a.id = $1 AND cur.status = ANY($4::smallint[])
       RETURNING cur.status AS from_status
     ), hist AS (
       INSERT INTO account_status_history (account_id, from_status, to_status, reason, author) SELECT $1, from_status, $2::smallint, $3, $5 FROM upd
     ), audit AS (
       INSERT INTO audit_log (actor, peer, action, account_id, target, detail)
       SELECT $5, $6, 'account.status', $1, '', left(($7::text[])[from_status + 1] || ' -> ' || ($7::text[])[$2::int + 1] || $8, 2000) FROM upd
     )
     SELECT cur.status, EXISTS (SELECT 1 FROM upd) AS changed FROM cur`,
    [id, change.to, change.reason, change.from, who.name, who.peer, change.names, change.suffix],
  );
  return r.rows[0];
}

/** Sets a status and records the change in the history. */
export async function setStatus(q: Queryable, id: string, from: number, to: number, reason: string, author: string): Promise<void> {
  await q.query("UPDATE accounts SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1", [id, to, reason]);
  await q.query("INSERT INTO account_status_history (account_id, from_status, to_status, reason, author) VALUES ($1, $2, $3, $4, $5)", [id, from, to, reason, author]);
}

/** One account by id with its sealed secrets, not audited (to change them), or undefined. */
export async function getAccount(q: Queryable, id: string): Promise<AccountRow | undefined> {
  const r = await q.query<AccountRow>(`SELECT ${COLUMNS} FROM accounts WHERE id = $1`, [id]);
  return r.rows[0];
}

/**
 * Replaces an account's sealed secrets if they are still `expected` (compare and set: a change
 * or key rotation since they were read makes it write nothing), with the audit record of the
 * change, in one statement; the row as changed, or undefined when nothing was written.
 */
export async function swapSecrets(
  q: Queryable,
  id: string,
  expected: string,
  next: { sealed: string; keyId: string; hasPhone: boolean },
  who: Actor,
  audit: { action: string; detail: string },
): Promise<AccountRow | undefined> {
  const r = await q.query<AccountRow>(
    `WITH upd AS (
       UPDATE accounts SET secrets = $3, key_id = $4, has_phone = $5, updated_at = now() WHERE id = $1 AND secrets = $2 RETURNING ${COLUMNS}
     ), audit AS (
       INSERT INTO audit_log (actor, peer, action, account_id, target, detail) SELECT $6, $7, $8, id, '', $9 FROM upd
     )
     SELECT * FROM upd`,
    [id, expected, next.sealed, next.keyId, next.hasPhone, who.name, who.peer, audit.action, audit.detail.slice(0, 2000)],
  );
  return r.rows[0];
}

/** The history of one account, newest first. */
export async function statusHistory(q: Queryable, id: string): Promise<StatusHistoryRow[]> {
  const r = await q.query<StatusHistoryRow>(
    "SELECT from_status, to_status, reason, author, changed_at FROM account_status_history WHERE account_id = $1 ORDER BY id DESC",
    [id],
  );
  return r.rows;
}

/** Filter of a listing: `labels` must all be present with these values; `loginPrefix` starts the login. */
export type AccountFilter = { platform: string; status: number; labels: Record<string, string>; loginPrefix: string };

/** The WHERE conditions of a filter, their parameters appended to `params`. */
function filterWhere(f: AccountFilter, params: unknown[]): string[] {
  const where: string[] = [];
  if (f.platform) where.push(`platform = $${params.push(f.platform)}`);
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  // One containment test for every label: AND by construction, served by the GIN index (009).
  if (Object.keys(f.labels).length) where.push(`labels @> $${params.push(JSON.stringify(f.labels))}::jsonb`);
  if (f.loginPrefix) where.push(`login LIKE $${params.push(f.loginPrefix.replace(/[\\%_]/g, (c) => "\\" + c) + "%")} ESCAPE '\\'`);
  return where;
}

/** One page of accounts after `afterId` (keyset on the primary key: stable under inserts). */
export async function listAccounts(q: Queryable, f: AccountFilter, afterId: string, limit: number): Promise<AccountRow[]> {
  const params: unknown[] = [];
  const where = filterWhere(f, params);
  if (afterId) where.push(`id > $${params.push(afterId)}`);
  const sql = `SELECT ${COLUMNS} FROM accounts ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id LIMIT $${params.push(limit)}`;
  return (await q.query<AccountRow>(sql, params)).rows;
}

/**
 * How many accounts match a filter: from the trigger-kept totals (O(platforms × statuses)) when
 * it filters by platform and status only; a count over the matching rows otherwise.
 */
export async function countAccounts(q: Queryable, f: AccountFilter): Promise<number> {
  if (Object.keys(f.labels).length || f.loginPrefix) {
    const params: unknown[] = [];
    const r = await q.query<{ n: string }>(`SELECT count(*) AS n FROM accounts WHERE ${filterWhere(f, params).join(" AND ")}`, params);
    return Number(r.rows[0]?.n ?? 0);
  }
  const r = await q.query<{ n: number | null }>(
    "SELECT sum(n)::bigint AS n FROM account_counts WHERE ($1 = '' OR platform = $1) AND ($2 = 0 OR status = $2)",
    [f.platform, f.status],
  );
  return Number(r.rows[0]?.n ?? 0);
}

/** What other services hold for an account, each id empty when none. */
export type AccountHoldings = { proxy_id: string; task_id: string; activation_id: string };

/**
 * What DeleteAccount must let go of, read from the shared store (the other services' tables,
 * read-only; the changes go through their APIs): the proxy allocation, the unfinished warming
 * task, and an open SMS activation of the account's registration (activations themselves name
 * no account; a registration links the two).
 */
export async function accountHoldings(q: Queryable, id: string): Promise<AccountHoldings> {
  const r = await q.query<AccountHoldings>(
    `SELECT
       coalesce((SELECT proxy_id FROM proxy_allocations WHERE account_id = $1), '') AS proxy_id,
       coalesce((SELECT id FROM warming_tasks WHERE account_id = $1 AND status IN (1, 2, 3) LIMIT 1), '') AS task_id,
       coalesce((SELECT a.id FROM registrations r JOIN sms_activations a ON a.id = r.activation_id
                 WHERE r.account_id = $1 AND a.status IN (1, 2, 3) ORDER BY a.id DESC LIMIT 1), '') AS activation_id`,
    [id],
  );
  return r.rows[0];
}

/** Accounts per (platform, status), from the trigger-kept totals (the conveer_accounts gauge). */
export async function countsByPlatformStatus(q: Queryable): Promise<{ platform: string; status: number; n: number }[]> {
  return (await q.query<{ platform: string; status: number; n: number }>("SELECT platform, status, n FROM account_counts")).rows;
}
