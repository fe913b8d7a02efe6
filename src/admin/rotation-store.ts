import type { Queryable } from "../store/db.ts";

/** The states of a key rotation, as stored (KeyRotationState without its prefix). */
export type RotationState = "RUNNING" | "SUCCEEDED" | "FAILED";

/** A key_rotations row, as stored (bigints as strings). */
export type RotationRow = {
  id: string;
  state: RotationState;
  key_id: string;
  total: string;
  done: string;
  batch_size: number;
  started_by: string;
  started_at: Date;
  heartbeat_at: Date;
  finished_at: Date | null;
  error: string;
};

const COLUMNS = "id, state, key_id, total::text AS total, done::text AS done, batch_size, started_by, started_at, heartbeat_at, finished_at, error";

/** Records a new RUNNING rotation; the partial unique index refuses a second RUNNING one (23505). */
export async function insertRotation(q: Queryable, r: { id: string; keyId: string; total: number; batchSize: number; startedBy: string }): Promise<RotationRow> {
  const res = await q.query<RotationRow>(
    `INSERT INTO key_rotations (id, state, key_id, total, batch_size, started_by) VALUES ($1, 'RUNNING', $2, $3, $4, $5) RETURNING ${COLUMNS}`,
    [r.id, r.keyId, r.total, r.batchSize, r.startedBy],
  );
  return res.rows[0];
}

/** The RUNNING rotation, if any (locked when `q` is a transaction and `lock` is set). */
export async function runningRotation(q: Queryable, lock = false): Promise<RotationRow | undefined> {
  return (await q.query<RotationRow>(`SELECT ${COLUMNS} FROM key_rotations WHERE state = 'RUNNING'${lock ? " FOR UPDATE" : ""}`)).rows[0];
}

/** One rotation by id, or the newest when `id` is "". */
export async function getRotation(q: Queryable, id: string): Promise<RotationRow | undefined> {
  const r = id
    ? await q.query<RotationRow>(`SELECT ${COLUMNS} FROM key_rotations WHERE id = $1`, [id])
    : await q.query<RotationRow>(`SELECT ${COLUMNS} FROM key_rotations ORDER BY id DESC LIMIT 1`);
  return r.rows[0];
}

/**
 * Marks FAILED every RUNNING rotation whose process stopped refreshing its heartbeat for longer
 * than the lease (it died); answers how many. The database's clock judges, so replicas agree.
 */
export async function failStale(q: Queryable, leaseMs: number): Promise<number> {
  const r = await q.query(
    `UPDATE key_rotations SET state = 'FAILED', finished_at = now(),
       error = 'the process running it stopped (no heartbeat since ' || to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '); start a new rotation to finish the sweep'
     WHERE state = 'RUNNING' AND heartbeat_at < now() - make_interval(secs => $1)`,
    [leaseMs / 1000],
  );
  return r.rowCount;
}

/** Writes progress and refreshes the heartbeat; false when the row is no longer RUNNING (it was failed as stale: stop). */
export async function recordProgress(q: Queryable, id: string, done: number | undefined): Promise<boolean> {
  const r = await q.query("UPDATE key_rotations SET done = coalesce($2, done), heartbeat_at = now() WHERE id = $1 AND state = 'RUNNING'", [id, done ?? null]);
  return r.rowCount > 0;
}

/** Ends a RUNNING rotation as SUCCEEDED or FAILED (with why); false when it had already ended. */
export async function finishRotation(q: Queryable, id: string, state: "SUCCEEDED" | "FAILED", done: number, error = ""): Promise<boolean> {
  const r = await q.query("UPDATE key_rotations SET state = $2, done = $3, error = $4, finished_at = now(), heartbeat_at = now() WHERE id = $1 AND state = 'RUNNING'", [id, state, done, error]);
  return r.rowCount > 0;
}
