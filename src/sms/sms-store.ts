import type { Queryable } from "../store/db.ts";
import type { ChangeTable } from "./activation-status.ts";

/** The NOTIFY channel that tells every replica an activation's outcome changed (code, cancel, expiry); the payload is the activation id. */
export const SMS_CHANNEL = "sms_code";

// conveer.SMSStatus values the SQL below names.
const PENDING = 1;
const WAITING_CODE = 2;
const CODE_RECEIVED = 3;

/** An sms_activations row, as stored. */
export type ActivationRow = {
  id: string;
  provider: string;
  provider_ref: string;
  phone: string;
  service: string;
  country: string;
  operator: string;
  price: number;
  /** conveer.SMSStatus. */
  status: number;
  code: string;
  refunded: boolean;
  released: boolean;
  expires_at: Date;
  created_at: Date;
  updated_at: Date;
};

/** A history row. */
export type ActivationHistoryRow = { from_status: number | null; to_status: number; reason: string; author: string; changed_at: Date };

const COLUMNS = "id, provider, provider_ref, phone, service, country, operator, price, status, code, refunded, released, expires_at, created_at, updated_at";

/** Inserts an activation and its first history entry, in one statement (one round trip, atomic without a transaction of its own). */
export async function insertActivation(
  q: Queryable,
  row: Omit<ActivationRow, "code" | "refunded" | "released" | "created_at" | "updated_at">,
  reason: string,
  author: string,
): Promise<ActivationRow> {
  const r = await q.query<ActivationRow>(
    `WITH ins AS (
       INSERT INTO sms_activations (id, provider, provider_ref, phone, service, country, operator, price, status, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}
     ), hist AS (
       INSERT INTO sms_activation_history (activation_id, from_status, to_status, reason, author) SELECT id, NULL, status, $11, $12 FROM ins
     )
     SELECT * FROM ins`,
    [row.id, row.provider, row.provider_ref, row.phone, row.service, row.country, row.operator, row.price, row.status, row.expires_at, reason, author],
  );
  return r.rows[0];
}

/** One activation by id, or undefined. */
export async function getActivation(q: Queryable, id: string): Promise<ActivationRow | undefined> {
  const r = await q.query<ActivationRow>(`SELECT ${COLUMNS} FROM sms_activations WHERE id = $1`, [id]);
  return r.rows[0];
}

/** Many activations by id, in one query (the waiters' batched reads). */
export async function getActivations(q: Queryable, ids: string[]): Promise<ActivationRow[]> {
  const r = await q.query<ActivationRow>(`SELECT ${COLUMNS} FROM sms_activations WHERE id = ANY($1::text[])`, [ids]);
  return r.rows;
}

/**
 * Records a delivered code on the activation of a provider's rental, if it still waits for one:
 * status CODE_RECEIVED, the code, a history entry and the NOTIFY, in one statement (one round
 * trip: the provider's codes are the hot write path). Answers the activation's id and its status
 * before the statement, and whether the code was recorded; undefined when no activation holds
 * the rental (yet).
 */
export async function recordCode(
  q: Queryable,
  provider: string,
  ref: string,
  code: string,
  author: string,
): Promise<{ id: string; status: number; recorded: boolean } | undefined> {
  // A waiting activation changed concurrently (cancelled) is re-checked by the UPDATE's own WHERE
  // on the newest row version, so a cancelled activation never takes a code.
  const r = await q.query<{ id: string; status: number; recorded: boolean }>(
    `WITH upd AS (
       UPDATE sms_activations a SET status = ${CODE_RECEIVED}, code = $3, updated_at = now()
       FROM (SELECT id, status FROM sms_activations WHERE provider = $1 AND provider_ref = $2) cur
       WHERE a.id = cur.id AND a.status IN (${PENDING}, ${WAITING_CODE})
       RETURNING a.id, cur.status AS from_status
     ), hist AS (
       INSERT INTO sms_activation_history (activation_id, from_status, to_status, reason, author)
       SELECT id, from_status, ${CODE_RECEIVED}, 'code received', $4 FROM upd
     ), note AS (
       SELECT pg_notify($5, id) FROM upd
     )
     SELECT r.id, r.status, (SELECT count(*) FROM note) > 0 AS recorded
     FROM sms_activations r WHERE r.provider = $1 AND r.provider_ref = $2`,
    [provider, ref, code, author, SMS_CHANNEL],
  );
  return r.rows[0];
}

/**
 * Applies a status rule to one activation (ChangeTable: the status it has → the status it gets,
 * with the reason), locking it: the update, its history entry and the NOTIFY to every replica in
 * one statement (one round trip, atomic without a transaction of its own). Only when it expires at
 * or before `expiredBy`, when given. Answers the row as it now is and whether it changed;
 * undefined when there is no such activation.
 */
export async function changeStatus(
  q: Queryable,
  id: string,
  rule: ChangeTable,
  author: string,
  expiredBy?: Date,
  /** The provider side is already settled (the rental finished first): a change also marks it released, in the same statement. */
  settled = false,
): Promise<(ActivationRow & { changed: boolean }) | undefined> {
  const r = await q.query<ActivationRow & { changed: boolean }>(
    `WITH cur AS (SELECT ${COLUMNS} FROM sms_activations WHERE id = $1 FOR UPDATE),
     pick AS (
       SELECT id AS pid, status AS from_status, ($3::smallint[])[array_position($2::smallint[], status)] AS to_status,
              ($4::text[])[array_position($2::smallint[], status)] AS reason
       FROM cur WHERE status = ANY($2::smallint[]) AND ($6::timestamptz IS NULL OR expires_at <= $6)
     ), upd AS (
       UPDATE sms_activations a SET status = pick.to_status, released = a.released OR $8, updated_at = now() FROM pick WHERE a.id = pick.pid
       RETURNING ${COLUMNS}, pick.from_status, pick.reason
     ), hist AS (
       INSERT INTO sms_activation_history (activation_id, from_status, to_status, reason, author) SELECT id, from_status, status, reason, $5 FROM upd
     ), note AS (
       SELECT pg_notify($7, id) FROM upd
     )
     SELECT ${COLUMNS}, true AS changed FROM upd WHERE (SELECT count(*) FROM note) > 0
     UNION ALL
     SELECT ${COLUMNS}, false AS changed FROM cur WHERE NOT EXISTS (SELECT 1 FROM upd)`,
    [id, rule.from, rule.to, rule.reason, author, expiredBy ?? null, SMS_CHANNEL, settled],
  );
  return r.rows[0];
}

/** Marks the provider side settled; `refunded` is sticky (a refund once confirmed stays confirmed). */
export async function markReleased(q: Queryable, id: string, refunded: boolean): Promise<ActivationRow | undefined> {
  const r = await q.query<ActivationRow>(
    `UPDATE sms_activations SET released = true, refunded = refunded OR $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, refunded],
  );
  return r.rows[0];
}

/** Ids of open activations (waiting, or holding a code) whose rental has ended, oldest first. */
export async function expiredOpen(q: Queryable, now: Date, limit: number): Promise<string[]> {
  const r = await q.query<{ id: string }>("SELECT id FROM sms_activations WHERE status IN (1, 2, 3) AND expires_at <= $1 ORDER BY expires_at LIMIT $2", [now, limit]);
  return r.rows.map((x) => x.id);
}

/**
 * Ended activations whose provider side is not settled (a provider call failed) and was last tried
 * at least `idleMs` ago (so a settlement still in flight is left alone), least recently tried first.
 */
export async function unreleased(q: Queryable, idleMs: number, limit: number): Promise<ActivationRow[]> {
  const r = await q.query<ActivationRow>(
    `SELECT ${COLUMNS} FROM sms_activations
     WHERE NOT released AND status IN (4, 5, 6) AND updated_at <= now() - $1 * interval '1 millisecond'
     ORDER BY updated_at LIMIT $2`,
    [idleMs, limit],
  );
  return r.rows;
}

/** Bumps updated_at so a retried row goes to the back of the sweeper's queue. */
export async function touch(q: Queryable, id: string): Promise<void> {
  await q.query("UPDATE sms_activations SET updated_at = now() WHERE id = $1", [id]);
}

/** The history of one activation, oldest first. */
export async function history(q: Queryable, id: string): Promise<ActivationHistoryRow[]> {
  const r = await q.query<ActivationHistoryRow>(
    "SELECT from_status, to_status, reason, author, changed_at FROM sms_activation_history WHERE activation_id = $1 ORDER BY id",
    [id],
  );
  return r.rows;
}

async function addHistory(q: Queryable, id: string, from: number | null, to: number, reason: string, author: string): Promise<void> {
  await q.query("INSERT INTO sms_activation_history (activation_id, from_status, to_status, reason, author) VALUES ($1, $2, $3, $4, $5)", [id, from, to, reason, author]);
}

/** ListActivations' filter; empty/0 fields match everything. */
export type ActivationFilter = { status: number; service: string; provider: string };

/** One page of activations before `beforeId`, newest first (keyset on the time-ordered id). */
export async function listActivations(q: Queryable, f: ActivationFilter, beforeId: string, limit: number): Promise<ActivationRow[]> {
  const params: unknown[] = [];
  const where = activationWhere(f, params);
  if (beforeId) where.push(`id < $${params.push(beforeId)}`);
  const sql = `SELECT ${COLUMNS} FROM sms_activations ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT $${params.push(limit)}`;
  return (await q.query<ActivationRow>(sql, params)).rows;
}

/** How many activations match a filter. */
export async function countActivations(q: Queryable, f: ActivationFilter): Promise<number> {
  const params: unknown[] = [];
  const where = activationWhere(f, params);
  const r = await q.query<{ n: string }>(`SELECT count(*) AS n FROM sms_activations ${where.length ? "WHERE " + where.join(" AND ") : ""}`, params);
  return Number(r.rows[0]?.n ?? 0);
}

function activationWhere(f: ActivationFilter, params: unknown[]): string[] {
  const where: string[] = [];
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  if (f.service) where.push(`service = $${params.push(f.service)}`);
  if (f.provider) where.push(`provider = $${params.push(f.provider)}`);
  return where;
}
