import type { Queryable } from "../store/db.ts";

/** A registrations row, as stored. */
export type RegistrationRow = {
  id: string;
  platform: string;
  status: "running" | "succeeded" | "failed";
  step: string;
  login: string;
  account_id: string;
  proxy_id: string;
  activation_id: string;
  signup_id: string;
  failed_step: string;
  error: string;
  lease_until: Date;
  /** The batch Register was given ("" when none). */
  batch_id: string;
  /** The fencing token: bumped by each take-over; writes name the claim they hold. */
  claim: number;
};

/** What a running registration's writes are fenced by: its id and the claim its runner holds. */
export type RegistrationClaim = { id: string; claim: number };

/** Claim 1 belongs to the process that inserted the registration. */
export const FIRST_CLAIM = 1;

/** Records a new registration, running, with a lease, in batch `batchId` ("" for none). */
export async function insertRegistration(q: Queryable, id: string, platform: string, login: string, leaseMs: number, batchId = ""): Promise<void> {
  await q.query(
    "INSERT INTO registrations (id, platform, status, step, login, lease_until, batch_id) VALUES ($1, $2, 'running', 'create_account', $3, now() + $4 * interval '1 millisecond', $5)",
    [id, platform, login, leaseMs, batchId],
  );
}

/**
 * A registration's move to its next step: what the last step produced, and the lease to renew;
 * or, with `status: "succeeded"` (and step "done"), its successful end.
 */
export type Advance = {
  c: RegistrationClaim;
  step: string;
  fields: Partial<Pick<RegistrationRow, "account_id" | "proxy_id" | "activation_id" | "signup_id">>;
  leaseMs: number;
  status?: "succeeded";
};

/**
 * Moves registrations to their next steps in one statement (concurrent registrations' steps share
 * it), storing what each last step produced and renewing each lease; per item, false (nothing
 * written for it) when its claim is no longer held: another replica took it over.
 */
export async function advance(q: Queryable, items: readonly Advance[]): Promise<Map<Advance, boolean>> {
  const rows = items.map((x) => ({ id: x.c.id, claim: x.c.claim, step: x.step, lease_ms: x.leaseMs, status: x.status, ...x.fields }));
  const r = await q.query<{ id: string }>(
    `UPDATE registrations r SET step = k.step, status = COALESCE(k.status, r.status),
       account_id = COALESCE(k.account_id, r.account_id), proxy_id = COALESCE(k.proxy_id, r.proxy_id),
       activation_id = COALESCE(k.activation_id, r.activation_id), signup_id = COALESCE(k.signup_id, r.signup_id),
       lease_until = now() + k.lease_ms * interval '1 millisecond', updated_at = now()
     FROM jsonb_to_recordset($1::jsonb) AS k(id text, claim int, step text, status text, account_id text, proxy_id text, activation_id text, signup_id text, lease_ms int)
     WHERE r.id = k.id AND r.claim = k.claim AND r.status = 'running'
     RETURNING r.id`,
    [JSON.stringify(rows)],
  );
  const moved = new Set(r.rows.map((x) => x.id));
  return new Map(items.map((x) => [x, moved.has(x.c.id)]));
}

/** Ends a registration (a success also ends through advance); false (nothing written) when the claim is no longer held, as for advance. */
export async function finishRegistration(q: Queryable, c: RegistrationClaim, status: "succeeded" | "failed", failedStep = "", error = ""): Promise<boolean> {
  const r = await q.query(
    "UPDATE registrations SET status = $2, step = 'done', failed_step = $3, error = $4, updated_at = now() WHERE id = $1 AND claim = $5 AND status = 'running'",
    [c.id, status, failedStep, error, c.claim],
  );
  return r.rowCount > 0;
}

/** Claims running registrations whose process died (lease passed): SKIP LOCKED, so one replica cleans each. */
export async function claimAbandoned(q: Queryable, limit: number, leaseMs: number): Promise<RegistrationRow[]> {
  const r = await q.query<RegistrationRow>(
    `UPDATE registrations SET lease_until = now() + $2 * interval '1 millisecond', claim = claim + 1
     WHERE id IN (SELECT id FROM registrations WHERE status = 'running' AND lease_until < now() ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING *`,
    [limit, leaseMs],
  );
  return r.rows;
}

/** One registration. */
export async function getRegistration(q: Queryable, id: string): Promise<RegistrationRow | undefined> {
  return (await q.query<RegistrationRow>("SELECT * FROM registrations WHERE id = $1", [id])).rows[0];
}

/** Renews a running registration's lease (its process is alive: the heartbeat); false when the claim is no longer held. */
export async function renewLease(q: Queryable, c: RegistrationClaim, leaseMs: number): Promise<boolean> {
  const r = await q.query("UPDATE registrations SET lease_until = now() + $2 * interval '1 millisecond' WHERE id = $1 AND claim = $3 AND status = 'running'", [c.id, leaseMs, c.claim]);
  return r.rowCount > 0;
}

/** A registrations row as listings read it (with its real-time stamps). */
export type ListedRegistrationRow = RegistrationRow & { created_at: Date; updated_at: Date };

/** The filter of a registration listing; empty fields match everything. */
export type RegistrationFilter = { platform: string; status: string; createdAfter: string; createdBefore: string; batchId: string };

function where(f: RegistrationFilter, params: unknown[]): string[] {
  const w = [`platform = $${params.push(f.platform)}`];
  if (f.status) w.push(`status = $${params.push(f.status)}`);
  if (f.createdAfter) w.push(`created_at >= $${params.push(f.createdAfter)}`);
  if (f.createdBefore) w.push(`created_at < $${params.push(f.createdBefore)}`);
  if (f.batchId) w.push(`batch_id = $${params.push(f.batchId)}`);
  return w;
}

/** One registration of a platform, with its stamps. */
export async function readRegistration(q: Queryable, platform: string, id: string): Promise<ListedRegistrationRow | undefined> {
  return (await q.query<ListedRegistrationRow>("SELECT * FROM registrations WHERE id = $1 AND platform = $2", [id, platform])).rows[0];
}

/** One page of registrations with ids below `beforeId` ("" for the first page), newest first (keyset on the primary key). */
export async function listRegistrations(q: Queryable, f: RegistrationFilter, beforeId: string, limit: number): Promise<ListedRegistrationRow[]> {
  const params: unknown[] = [];
  const w = where(f, params);
  if (beforeId) w.push(`id < $${params.push(beforeId)}`);
  const sql = `SELECT * FROM registrations WHERE ${w.join(" AND ")} ORDER BY id DESC LIMIT $${params.push(limit)}`;
  return (await q.query<ListedRegistrationRow>(sql, params)).rows;
}

/** How many registrations match a filter. */
export async function countRegistrations(q: Queryable, f: RegistrationFilter): Promise<number> {
  const params: unknown[] = [];
  const r = await q.query<{ n: string | number }>(`SELECT count(*) AS n FROM registrations WHERE ${where(f, params).join(" AND ")}`, params);
  return Number(r.rows[0]?.n ?? 0);
}
