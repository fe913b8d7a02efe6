import type { Queryable, Transaction } from "../store/db.ts";
import { ACTION_KINDS } from "../platforms/driver.ts";
import type { PlannedAction } from "./planner.ts";

/**
 * Warming's SQL. Every scenario-time value comes in as a parameter (`now` from the injectable
 * clock), never SQL now(), so fake clocks and CONVEER_TIME_SCALE work; leases are the one
 * exception: they bound a claim against a dead process, which is a real-time matter, so they use
 * the database clock (shared by every replica).
 *
 * Lock order, everywhere: a task row before its action rows. Claims take task rows with SKIP
 * LOCKED, so a claim never waits on a recorder, a pause or another worker.
 */

/** The NOTIFY channel; the payload is the highest event id the notifying transaction wrote. */
export const EVENTS_CHANNEL = "warming_events";

/** conveer.WarmingStatus values, as stored. */
export const TaskStatus = { PENDING: 1, RUNNING: 2, PAUSED: 3, COMPLETED: 4, FAILED: 5, STOPPED: 6 } as const;
/** Statuses of a task that has not ended. */
export const OPEN_STATUSES: readonly number[] = [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.PAUSED];
const OPEN_IN = OPEN_STATUSES.join(", ");

/** The event types, as stored and streamed. */
export const EVENT_TYPES = ["action_started", "action_completed", "action_failed", "status_changed"] as const;
/** One event type. */
export type EventType = (typeof EVENT_TYPES)[number];

/** A warming_tasks row. */
export type TaskRow = {
  id: string;
  account_id: string;
  platform: string;
  scenario_id: string;
  duration_days: number;
  status: number;
  total_days: number;
  total_actions: number;
  day1_at: Date;
  next_seq: number;
  run_at: Date | null;
  next_action_at: Date | null;
  actions_completed: number;
  actions_failed: number;
  consecutive_failures: number;
  progress: number;
  current_day: number;
  error: string;
  account_released: boolean;
  started_at: Date;
  paused_at: Date | null;
  completed_at: Date | null;
};

/** A task row locked for recording, with the due time of the action after next_seq (null when none). */
export type LockedTask = TaskRow & { following_due: Date | null };

/**
 * An action a worker has claimed: its queue row (warming_due) is leased, and its action_started event is
 * written. `task` is its task as the claim left it: with one action per task in flight, only a
 * status change (pause, stop) can alter what recording depends on, which applyDecisions guards.
 */
export type ClaimedAction = {
  task_id: string;
  seq: number;
  day: number;
  kind: string;
  due_at: Date;
  key: string;
  attempts: number;
  account_id: string;
  platform: string;
  /** The traceparent of the call that started the task ('' when untraced): the action's span links to it. */
  traceparent: string;
  task: LockedTask;
  /** When it was claimed (scenario time): recorded as the action's started_at with its outcome. */
  claimed_at: Date;
};

/** An event to write. */
export type EventInput = { task_id: string; event_type: EventType; at: Date; data: Record<string, string> };
/** A stored event. */
export type EventRow = EventInput & { id: number };

/** The warming_tasks columns of a TaskRow (run_at, kept in warming_due, is not one: see TASK_SELECT). */
const TASK_COLUMNS = `id, account_id, platform, scenario_id, duration_days, status, total_days, total_actions, day1_at, next_seq,
  next_action_at, actions_completed, actions_failed, consecutive_failures, progress, current_day, error,
  account_released, started_at, paused_at, completed_at`;

/** TASK_COLUMNS, each qualified by `alias`. */
export function qualifiedTaskColumns(alias: string): string {
  return TASK_COLUMNS.split(",").map((c) => `${alias}.${c.trim()}`).join(", ");
}
const T_COLUMNS = qualifiedTaskColumns("t");
const W_COLUMNS = qualifiedTaskColumns("w");
/**
 * A TaskRow's select list over warming_tasks named `t`: its columns, and run_at from the task's
 * queue row (warming_due) when it is claimable (NULL while in flight or when there is none).
 */
const TASK_SELECT = `${T_COLUMNS}, (SELECT d.run_at FROM warming_due d WHERE d.task_id = t.id AND d.lease_until IS NULL) AS run_at`;
/** RETURNING a TaskRow of a task with no claimable queue row (new, pending, ended). */
const NO_RUN_AT = `${TASK_COLUMNS}, NULL::timestamptz AS run_at`;

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/**
 * Inserts a PENDING task of `totalActions` planned actions, the first due at `firstAt` (null: none);
 * insertActions then writes the plan.
 */
export async function insertTask(
  q: Queryable,
  t: Pick<TaskRow, "id" | "account_id" | "platform" | "scenario_id" | "duration_days" | "total_days" | "day1_at" | "started_at"> & { traceparent?: string },
  totalActions: number,
  firstAt: Date | null,
): Promise<TaskRow> {
  const r = await q.query<TaskRow>(
    `INSERT INTO warming_tasks (id, account_id, platform, scenario_id, duration_days, status, total_days, total_actions, day1_at, next_action_at, started_at, traceparent)
     VALUES ($1, $2, $3, $4, $5, ${TaskStatus.PENDING}, $6, $7, $8::timestamptz, $9::timestamptz, $10::timestamptz, $11) RETURNING ${NO_RUN_AT}`,
    [t.id, t.account_id, t.platform, t.scenario_id, t.duration_days, t.total_days, totalActions, t.day1_at, firstAt, t.started_at, t.traceparent ?? ""],
  );
  return r.rows[0];
}

/**
 * Writes a batch of a task's planned actions: consecutive seqs, each keyed `${taskId}:${seq}` (the
 * planner's key with the task id as seed). Sent compact, as integers (the seq of the first, kinds
 * as indexes, due times as ms after the first), and the keys built by the database: text and
 * timestamp arrays cost PGlite three times as much to take in.
 */
export async function insertActions(q: Queryable, taskId: string, actions: readonly PlannedAction[]): Promise<void> {
  if (actions.length === 0) return;
  const first = actions[0];
  const kinds: number[] = new Array(actions.length);
  const days: number[] = new Array(actions.length);
  const offsets: number[] = new Array(actions.length);
  for (let i = 0; i < actions.length; i++) {
    const a = actions[i];
    if (a.seq !== first.seq + i || a.key !== `${taskId}:${a.seq}`) throw new Error(`insertActions: action ${i} (seq ${a.seq}, key ${a.key}) breaks the batch's seq ${first.seq + i} or key ${taskId}:${first.seq + i}`);
    kinds[i] = KIND_INDEX.get(a.kind)!;
    days[i] = a.day;
    offsets[i] = a.at.getTime() - first.at.getTime();
  }
  await q.query(
    `INSERT INTO warming_actions (task_id, seq, day, kind, due_at, key)
     SELECT $1, $2::int + p.o::int - 1, p.day, ($3::text[])[p.k], $4::timestamptz + p.ms * interval '1 millisecond', $1 || ':' || ($2::int + p.o::int - 1)
     FROM unnest($5::int[], $6::int[], $7::int8[]) WITH ORDINALITY AS p(day, k, ms, o)`,
    [taskId, first.seq, ACTION_KINDS, first.at, days, kinds, offsets],
  );
}

const KIND_INDEX = new Map<string, number>(ACTION_KINDS.map((k, i) => [k, i + 1]));

/** Removes a task that never started (its account could not be marked WARMING). */
export async function deleteTask(q: Queryable, id: string): Promise<void> {
  await q.query("DELETE FROM warming_tasks WHERE id = $1", [id]);
}

/** One task, or undefined. */
export async function getTask(q: Queryable, id: string): Promise<TaskRow | undefined> {
  const r = await q.query<TaskRow>(`SELECT ${TASK_SELECT} FROM warming_tasks t WHERE id = $1`, [id]);
  return r.rows[0];
}

/** One task, locked until the transaction ends (a status change), or undefined. */
export async function lockTask(tx: Transaction, id: string): Promise<TaskRow | undefined> {
  const r = await tx.query<TaskRow>(`SELECT ${TASK_SELECT} FROM warming_tasks t WHERE id = $1 FOR UPDATE`, [id]);
  return r.rows[0];
}

/** The account's unfinished task, if any. */
export async function openTaskOf(q: Queryable, accountId: string): Promise<TaskRow | undefined> {
  const r = await q.query<TaskRow>(`SELECT ${TASK_SELECT} FROM warming_tasks t WHERE account_id = $1 AND status IN (${OPEN_IN})`, [accountId]);
  return r.rows[0];
}

/** The fields of a task a status change or a recorded result may set. */
export type TaskUpdate = Partial<
  Pick<
    TaskRow,
    | "status"
    | "next_seq"
    | "run_at"
    | "next_action_at"
    | "actions_completed"
    | "actions_failed"
    | "consecutive_failures"
    | "progress"
    | "current_day"
    | "error"
    | "account_released"
    | "paused_at"
    | "completed_at"
  >
>;

const UPDATE_TYPES: Record<keyof TaskUpdate, string> = {
  status: "smallint",
  next_seq: "int",
  run_at: "timestamptz",
  next_action_at: "timestamptz",
  actions_completed: "int",
  actions_failed: "int",
  consecutive_failures: "int",
  progress: "int",
  current_day: "int",
  error: "text",
  account_released: "boolean",
  paused_at: "timestamptz",
  completed_at: "timestamptz",
};

/** The fields of a TaskUpdate stored in warming_tasks (run_at is the queue row's: warming_due). */
const TASK_FIELDS = (Object.keys(UPDATE_TYPES) as (keyof TaskUpdate)[]).filter((f) => f !== "run_at");

/**
 * Applies one update per task in one statement (each update may set different fields; absent
 * fields stay), then its run_at to the task's queue row (schedule). The rows answered carry run_at
 * as set (NULL when the update left it).
 */
export async function updateTasks(q: Queryable, updates: { id: string; set: TaskUpdate }[]): Promise<TaskRow[]> {
  if (updates.length === 0) return [];
  const fields = TASK_FIELDS.filter((f) => updates.some((u) => f in u.set));
  // jsonb_to_recordset carries typed values and NULLs alike on both drivers; a per-row "has" list tells a NULL to write from a field to leave.
  const recs = updates.map((u) => {
    const rec: Record<string, unknown> = { id: u.id, has: Object.keys(u.set) };
    for (const f of fields) {
      const v = u.set[f];
      rec[f] = v instanceof Date ? v.toISOString() : (v ?? null);
    }
    return rec;
  });
  const cols = fields.map((f) => `${f} ${UPDATE_TYPES[f]}`).join(", ");
  const sets = fields.map((f) => `${f} = CASE WHEN r.has ? '${f}' THEN r.${f} ELSE t.${f} END`).join(", ");
  const r = await q.query<TaskRow>(
    `UPDATE warming_tasks t SET ${sets}${sets ? ", " : ""}updated_at = now()
     FROM jsonb_to_recordset($1::jsonb) AS r(id text, has jsonb${cols ? ", " + cols : ""})
     WHERE t.id = r.id AND t.id = ANY($2::text[]) RETURNING ${T_COLUMNS}, NULL::timestamptz AS run_at`,
    // The redundant id list gives the planner an index path (it cannot see into the jsonb).
    [JSON.stringify(recs), updates.map((u) => u.id)],
  );
  const runAt = new Map(updates.filter((u) => "run_at" in u.set).map((u) => [u.id, u.set.run_at ?? null]));
  if (runAt.size > 0) await schedule(q, runAt);
  return r.rows.map((row) => (runAt.has(row.id) ? { ...row, run_at: runAt.get(row.id)! } : row));
}

/**
 * Sets tasks' queue rows from a change that holds no claim (a status change, the repair): a time
 * makes the task's next action claimable then, NULL makes it unclaimable. A row leased by a claim
 * (an action in flight) is left alone: recording its outcome moves it on, by the task as it is then.
 */
async function schedule(q: Queryable, runAt: Map<string, Date | null>): Promise<void> {
  const recs = [...runAt].map(([id, at]) => ({ id, run_at: iso(at) }));
  await q.query(
    `WITH r AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(id text, run_at timestamptz)),
     gone AS (DELETE FROM warming_due d USING r WHERE d.task_id = r.id AND r.run_at IS NULL AND d.lease_until IS NULL AND d.task_id = ANY($2::text[]))
     INSERT INTO warming_due (task_id, seq, run_at)
     SELECT t.id, t.next_seq, r.run_at FROM r JOIN warming_tasks t ON t.id = r.id WHERE r.run_at IS NOT NULL AND t.id = ANY($2::text[])
     ON CONFLICT (task_id) DO UPDATE SET seq = EXCLUDED.seq, run_at = EXCLUDED.run_at WHERE warming_due.lease_until IS NULL`,
    [JSON.stringify(recs), [...runAt.keys()]],
  );
}

/** Whether an action of the task is in flight: its queue row is leased by a claim. */
export async function inFlight(q: Queryable, taskId: string): Promise<boolean> {
  const r = await q.query("SELECT 1 FROM warming_due WHERE task_id = $1 AND lease_until IS NOT NULL", [taskId]);
  return r.rows.length > 0;
}

/**
 * Writes events in order and NOTIFYs once with the highest id, in the caller's transaction; answers
 * the ids. Precondition (what makes the event hub's gap check exact): the transaction has already
 * written something else, so it holds a transaction id before it takes event ids. Every caller
 * changes a task or action row first.
 */
export async function insertEvents(q: Queryable, events: readonly EventInput[]): Promise<number[]> {
  if (events.length === 0) return [];
  const r = await q.query<{ ids: number[] }>(
    `WITH e AS (
       INSERT INTO warming_events (task_id, event_type, at, data)
       SELECT x.task_id, x.event_type, x.at, x.data
       FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (task_id text, event_type text, at timestamptz, data jsonb)) WITH ORDINALITY AS x(task_id, event_type, at, data, ord)
       ORDER BY x.ord
       RETURNING id
     )
     SELECT array_agg(id ORDER BY id) AS ids, pg_notify('${EVENTS_CHANNEL}', max(id)::text) FROM e`,
    [JSON.stringify(events.map((e) => ({ task_id: e.task_id, event_type: e.event_type, at: e.at.toISOString(), data: e.data })))],
  );
  return (r.rows[0]?.ids ?? []).map(Number);
}

/**
 * Claims up to `limit` due actions in one statement: the tasks' queue rows (claimable, run_at ≤
 * now, SKIP LOCKED, so concurrent workers take different tasks and never wait) get a lease of
 * leaseMs real time and the next attempt number (with seq, the lease token recording checks); one
 * action_started event each, then NOTIFY. Nothing else is written: the task row and the action row
 * are read here and written once, when the outcome is recorded. At most one action per task is in
 * flight: a task has one queue row, unclaimable while leased.
 */
export async function claimDue(q: Queryable, now: Date, limit: number, leaseMs: number): Promise<{ claimed: ClaimedAction[]; nextRunAt: Date | null }> {
  const r = await q.query<Omit<ClaimedAction, "task" | "account_id" | "platform" | "claimed_at"> & { task: unknown; following_due: Date | null; next_run_at: Date | null }>(
    `WITH c AS (
       SELECT ctid AS tid, task_id, seq FROM warming_due
       WHERE lease_until IS NULL AND run_at <= $1::timestamptz
       ORDER BY run_at
       LIMIT $2
       FOR UPDATE SKIP LOCKED
     ), t AS (
       -- = ANY(ARRAY(…)) and the unnest below keep every step an index lookup: joins against CTEs
       -- would let the planner hash-join over whole tables, whose cost grows with them.
       SELECT ${W_COLUMNS}, w.traceparent FROM warming_tasks w
       WHERE w.id = ANY(ARRAY(SELECT task_id FROM c)) AND w.status = ${TaskStatus.RUNNING}
     ), x AS (
       SELECT a.task_id, a.seq, a.day, a.kind, a.due_at, a.key, a.attempts
       FROM unnest(ARRAY(SELECT task_id FROM c ORDER BY task_id), ARRAY(SELECT seq FROM c ORDER BY task_id)) AS k(task_id, seq)
       JOIN warming_actions a ON a.task_id = k.task_id AND a.seq = k.seq
       WHERE a.status = 'pending'
     ), ck AS (
       SELECT c.tid, x.attempts FROM c JOIN x ON x.task_id = c.task_id JOIN t ON t.id = c.task_id
     ), d AS (
       -- The row versions c locked, of running tasks whose action is pending: by TID, no index lookup.
       -- A row c found updated by a commit after this statement's snapshot is locked in its newer
       -- version, which this snapshot cannot see: it matches nothing here and is claimed next time.
       UPDATE warming_due d SET lease_until = now() + $3 * interval '1 millisecond', attempts = greatest(d.attempts, k.attempts) + 1
       FROM unnest(ARRAY(SELECT tid FROM ck ORDER BY tid), ARRAY(SELECT attempts FROM ck ORDER BY tid)) AS k(tid, attempts)
       WHERE d.ctid = k.tid
       RETURNING d.task_id, d.attempts
     ), j AS (
       SELECT x.task_id, x.seq, x.day, x.kind, x.due_at, x.key, d.attempts, to_jsonb(t) AS task,
         (SELECT n.due_at FROM warming_actions n WHERE n.task_id = x.task_id AND n.seq = x.seq + 1) AS following_due
       FROM d JOIN x ON x.task_id = d.task_id JOIN t ON t.id = d.task_id
     ), e AS (
       INSERT INTO warming_events (task_id, event_type, at, data)
       SELECT task_id, 'action_started', $1::timestamptz, jsonb_build_object(
         'action_type', 'ACTION_TYPE_' || upper(kind), 'seq', seq::text, 'day', day::text, 'attempt', attempts::text,
         'due_at', to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'lag_ms', round(extract(epoch FROM ($1::timestamptz - due_at)) * 1000)::bigint::text,
         'progress', task->>'progress')
       FROM j ORDER BY due_at, task_id
       RETURNING id
     ), n AS (
       SELECT pg_notify('${EVENTS_CHANNEL}', max(id)::text) FROM e HAVING count(*) > 0
     )
     SELECT j.task_id, j.seq, j.day, j.kind, j.due_at, j.key, j.attempts, j.task, j.following_due, (SELECT count(*) FROM n) AS notified, NULL AS next_run_at FROM j
     UNION ALL
     -- What the worker sleeps until when this claim was not full: the earliest run_at after now.
     SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT min(run_at) FROM warming_due WHERE lease_until IS NULL AND run_at > $1::timestamptz)`,
    [now, limit, leaseMs],
  );
  const next = r.rows.find((x) => x.task_id === null);
  const claimed = r.rows.filter((x) => x.task_id !== null).map((x) => {
    const t = x.task as unknown as Record<string, unknown>;
    const task = { ...t, following_due: x.following_due } as unknown as LockedTask;
    for (const k of ["day1_at", "run_at", "next_action_at", "started_at", "paused_at", "completed_at"] as const) {
      const v = t[k];
      (task as Record<string, unknown>)[k] = typeof v === "string" ? new Date(v) : null;
    }
    const traceparent = typeof t.traceparent === "string" ? t.traceparent : "";
    return { task_id: x.task_id, seq: x.seq, day: x.day, kind: x.kind, due_at: x.due_at, key: x.key, attempts: x.attempts, account_id: task.account_id, platform: task.platform, traceparent, task, claimed_at: now };
  });
  return { claimed, nextRunAt: next?.next_run_at ?? null };
}

/** The earliest run_at of a RUNNING task (what the workers sleep until), or null. */
export async function nextRunAt(q: Queryable): Promise<Date | null> {
  const r = await q.query<{ at: Date | null }>("SELECT min(run_at) AS at FROM warming_due WHERE lease_until IS NULL");
  return r.rows[0]?.at ?? null;
}

/** Locks the tasks (in id order: no deadlock between recorders) and reads them with the due time of the action after next_seq. */
export async function lockTasks(tx: Transaction, ids: readonly string[]): Promise<LockedTask[]> {
  const r = await tx.query<LockedTask>(
    `SELECT ${TASK_SELECT},
       (SELECT n.due_at FROM warming_actions n WHERE n.task_id = t.id AND n.seq = t.next_seq + 1) AS following_due
     FROM warming_tasks t WHERE t.id = ANY($1::text[]) ORDER BY t.id FOR UPDATE OF t`,
    [[...ids]],
  );
  return r.rows;
}

/** How a claimed action ends: its new state (pending again for a retry), when, how long it took, why it failed. */
export type ActionFinish = { task_id: string; seq: number; attempts: number; status: "pending" | "done" | "failed"; finished_at: Date | null; duration_ms: number | null; error: string };

/** One recorded outcome for applyDecisions: what the task must still look like, and what to write. */
export type GuardedDecision = {
  /** The task's status, next_seq and failures in a row the decision was computed from. */
  expect: { status: number; next_seq: number; consecutive_failures: number };
  action: ActionFinish;
  /** When the attempt was claimed (scenario time), the action's started_at; null leaves it. */
  startedAt: Date | null;
  /** The action's key (its unique index: one lookup per action, however long the plan). */
  key: string;
  /** The task's fields; run_at moves its queue row on (absent or null: the row goes). */
  task: TaskUpdate;
  events: EventInput[];
};

const TASK_SET = TASK_FIELDS.map((f) => `${f} = CASE WHEN r.has ? '${f}' THEN r.${f} ELSE t.${f} END`).join(",\n         ");
const TASK_COLS = TASK_FIELDS.map((f) => `${f} ${UPDATE_TYPES[f]}`).join(", ");

/**
 * Records decided outcomes in ONE statement (one round trip, its own transaction, or the caller's):
 * locks the tasks that still look as the decisions assumed (task before queue row, as everywhere),
 * takes the queue rows still held by the claim (same seq and attempt, leased; with onlyExpired,
 * the lease lapsed) and moves each on to the task's next run (or deletes it), records those
 * actions, updates those tasks, writes their events and NOTIFYs: one statement for every table.
 * Answers, per task: `guarded` (the task still looked as assumed), `held` (recorded), and the
 * tasks that ended. A task whose guard failed (paused or stopped meanwhile) is left untouched for
 * the caller's locked path; one guarded but not held lost its lease to another worker.
 */
export async function applyDecisions(q: Queryable, ds: readonly GuardedDecision[], onlyExpired = false): Promise<{ guarded: Set<string>; held: Set<string>; ended: EndedTask[] }> {
  if (ds.length === 0) return { guarded: new Set(), held: new Set(), ended: [] };
  const recs = ds.map((d) => {
    const rec: Record<string, unknown> = {
      task_id: d.action.task_id,
      seq: d.action.seq,
      attempts: d.action.attempts,
      expect_status: d.expect.status,
      expect_next_seq: d.expect.next_seq,
      expect_failures: d.expect.consecutive_failures,
      a_key: d.key,
      a_status: d.action.status,
      a_started_at: iso(d.startedAt),
      a_finished_at: iso(d.action.finished_at),
      a_duration_ms: d.action.duration_ms,
      a_error: d.action.error,
      d_seq: d.task.next_seq ?? d.action.seq,
      d_run_at: iso(d.task.run_at),
      has: Object.keys(d.task),
      events: d.events.map((e) => ({ event_type: e.event_type, at: e.at.toISOString(), data: e.data })),
    };
    for (const [k, v] of Object.entries(d.task)) if (k !== "run_at") rec[k] = v instanceof Date ? v.toISOString() : v;
    return rec;
  });
  const fence = `d.task_id = r.task_id AND d.seq = r.seq AND d.attempts = r.attempts AND d.lease_until IS NOT NULL${onlyExpired ? " AND d.lease_until < now()" : ""}
         AND d.task_id = ANY(ARRAY(SELECT id FROM g))`;
  const r = await q.query<{ unguarded: string[]; lost: string[]; ended: EndedTask[] }>(
    `WITH r AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(task_id text, seq int, attempts int, expect_status smallint, expect_next_seq int, expect_failures int,
         a_key text, a_status text, a_started_at timestamptz, a_finished_at timestamptz, a_duration_ms int, a_error text, d_seq int, d_run_at timestamptz, has jsonb, events jsonb, ${TASK_COLS})
     ), g AS (
       SELECT t.id FROM warming_tasks t JOIN r ON r.task_id = t.id
       WHERE t.id = ANY($2::text[]) AND t.status = r.expect_status AND t.next_seq = r.expect_next_seq AND t.consecutive_failures = r.expect_failures
       ORDER BY t.id
       FOR NO KEY UPDATE OF t
     ), kept AS (
       UPDATE warming_due d SET seq = r.d_seq, run_at = r.d_run_at, lease_until = NULL, attempts = CASE WHEN r.d_seq = d.seq THEN d.attempts ELSE 0 END
       FROM r
       WHERE r.d_run_at IS NOT NULL AND ${fence}
       RETURNING d.task_id
     ), gone AS (
       ${
         // Only when a task stops running (ended, paused): the DELETE costs a scan even with nothing to delete.
         // The rows to delete as arrays (unnest: one index lookup each), not a join with r, which
         // the planner made a nested loop over r per row: quadratic in the batch.
         recs.some((x) => x.d_run_at === null)
           ? `DELETE FROM warming_due d
              USING unnest(${["task_id", "seq", "attempts"].map((c) => `ARRAY(SELECT ${c} FROM r WHERE r.d_run_at IS NULL AND r.task_id = ANY(ARRAY(SELECT id FROM g)) ORDER BY r.task_id)`).join(", ")}) AS k(task_id, seq, attempts)
              WHERE d.task_id = k.task_id AND d.seq = k.seq AND d.attempts = k.attempts AND d.lease_until IS NOT NULL${onlyExpired ? " AND d.lease_until < now()" : ""}
              RETURNING d.task_id`
           : "SELECT NULL::text AS task_id WHERE false"
       }
     ), h AS (
       SELECT task_id FROM kept UNION ALL SELECT task_id FROM gone
     ), a AS (
       UPDATE warming_actions x
       SET status = r.a_status, attempts = r.attempts, started_at = coalesce(r.a_started_at, x.started_at), finished_at = r.a_finished_at, duration_ms = r.a_duration_ms, error = r.a_error
       FROM r
       WHERE x.key = r.a_key AND x.task_id = r.task_id AND x.seq = r.seq
         AND x.key = ANY(ARRAY(SELECT r.a_key FROM r WHERE r.task_id = ANY(ARRAY(SELECT task_id FROM h))))
       RETURNING x.task_id
     ), u AS (
       -- updated_at moves when a task ends (the account release's outbox reads it), not per action:
       -- an update of no indexed column stays on its page (HOT).
       UPDATE warming_tasks t
       SET ${TASK_SET},
         updated_at = CASE WHEN r.has ? 'status' AND r.status IS DISTINCT FROM t.status THEN now() ELSE t.updated_at END
       FROM r
       WHERE t.id = r.task_id AND t.id = ANY(ARRAY(SELECT task_id FROM a))
       RETURNING t.id, t.account_id, t.platform, t.status, t.error, t.actions_completed, t.actions_failed
     ), e AS (
       INSERT INTO warming_events (task_id, event_type, at, data)
       SELECT r.task_id, ev.event_type, ev.at, ev.data
       FROM r, ROWS FROM (jsonb_to_recordset(r.events) AS (event_type text, at timestamptz, data jsonb)) WITH ORDINALITY AS ev(event_type, at, data, ord)
       WHERE r.task_id = ANY(ARRAY(SELECT task_id FROM a))
       ORDER BY r.task_id, ev.ord
       RETURNING id
     ), n AS (
       SELECT pg_notify('${EVENTS_CHANNEL}', max(id)::text) FROM e HAVING count(*) > 0
     )
     -- The exceptions (usually none), not the sets: a driver parses a text array by the character.
     SELECT ARRAY(SELECT task_id FROM r EXCEPT SELECT id FROM g) AS unguarded, ARRAY(SELECT id FROM g EXCEPT SELECT task_id FROM a) AS lost,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'account_id', account_id, 'platform', platform, 'status', status, 'error', error, 'actions_completed', actions_completed, 'actions_failed', actions_failed)), '[]'::jsonb)
        FROM u WHERE status IN (${TaskStatus.COMPLETED}, ${TaskStatus.FAILED})) AS ended,
       (SELECT count(*) FROM n) AS notified`,
    [JSON.stringify(recs), ds.map((d) => d.action.task_id)],
  );
  const row = r.rows[0];
  const unguarded = new Set(row.unguarded);
  const guarded = new Set(ds.map((d) => d.action.task_id).filter((id) => !unguarded.has(id)));
  const lost = new Set(row.lost);
  return { guarded, held: lost.size ? new Set([...guarded].filter((id) => !lost.has(id))) : guarded, ended: row.ended };
}

/** What releasing an ended task's account needs. */
export type EndedTask = Pick<TaskRow, "id" | "account_id" | "platform" | "status" | "error" | "actions_completed" | "actions_failed">;

/** Extends the leases of actions still in flight here (same seq and attempt, still leased). */
export async function renewLeases(q: Queryable, held: readonly { task_id: string; seq: number; attempts: number }[], leaseMs: number): Promise<number> {
  if (held.length === 0) return 0;
  const r = await q.query(
    `UPDATE warming_due d SET lease_until = now() + $2 * interval '1 millisecond'
     FROM jsonb_to_recordset($1::jsonb) AS r(task_id text, seq int, attempts int)
     WHERE d.task_id = r.task_id AND d.seq = r.seq AND d.attempts = r.attempts AND d.lease_until IS NOT NULL`,
    [JSON.stringify(held), leaseMs],
  );
  return r.rowCount;
}

/**
 * Actions in flight whose lease lapsed (their worker died or hung), oldest first. A scan of the
 * queue (one narrow row per running task): an index on lease_until would cost every claim a write.
 */
export async function expiredLeases(q: Queryable, limit: number): Promise<{ task_id: string; seq: number; attempts: number; kind: string; day: number; key: string }[]> {
  const r = await q.query<{ task_id: string; seq: number; attempts: number; kind: string; day: number; key: string }>(
    `SELECT d.task_id, d.seq, d.attempts, a.kind, a.day, a.key FROM warming_due d JOIN warming_actions a ON a.task_id = d.task_id AND a.seq = d.seq
     WHERE d.lease_until < now() ORDER BY d.lease_until LIMIT $1`,
    [limit],
  );
  return r.rows;
}

/**
 * RUNNING tasks with actions left and no queue row (nothing claimable, nothing in flight): cannot
 * happen while the invariants hold; repaired rather than left stuck. Looks at one slice of the
 * tasks, the next `slice` by id after `after`, so that each call costs a bounded scan however many
 * tasks there are (the whole table took 225-616 ms at 100,000 tasks, beside the claims); answers
 * up to `limit` of them, in id order, and where the next call goes on ('' : from the start).
 */
export async function strandedTasks(q: Queryable, after: string, slice: number, limit: number): Promise<{ tasks: TaskRow[]; next: string }> {
  const end = (await q.query<{ last: string | null; n: number }>("SELECT max(id) AS last, count(*)::int AS n FROM (SELECT id FROM warming_tasks WHERE id > $1 ORDER BY id LIMIT $2) s", [after, slice])).rows[0];
  if (!end?.last) return { tasks: [], next: "" };
  const r = await q.query<TaskRow>(
    `SELECT ${TASK_SELECT} FROM warming_tasks t
     WHERE t.id > $1 AND t.id <= $2 AND t.status = ${TaskStatus.RUNNING} AND t.next_seq < t.total_actions
       AND NOT EXISTS (SELECT 1 FROM warming_due d WHERE d.task_id = t.id)
     ORDER BY t.id
     LIMIT $3`,
    [after, end.last, limit],
  );
  const next = r.rows.length === limit ? r.rows[limit - 1].id : end.n < slice ? "" : end.last;
  return { tasks: r.rows, next };
}

/**
 * Claims ended tasks whose account still has to be moved back from WARMING and that nobody has
 * touched for olderThanMs (real time): bumping updated_at holds each for that long, so replicas
 * sweeping at once do not release the same account twice.
 */
export async function claimUnreleased(q: Queryable, olderThanMs: number, limit: number): Promise<TaskRow[]> {
  const r = await q.query<TaskRow>(
    `UPDATE warming_tasks SET updated_at = now()
     WHERE id IN (SELECT id FROM warming_tasks WHERE NOT account_released AND updated_at < now() - $1 * interval '1 millisecond' ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
     RETURNING ${NO_RUN_AT}`,
    [olderThanMs, limit],
  );
  return r.rows;
}

/** Marks tasks' accounts as released. */
export async function markReleased(q: Queryable, ids: readonly string[]): Promise<void> {
  if (ids.length > 0) await q.query("UPDATE warming_tasks SET account_released = true, updated_at = now() WHERE id = ANY($1::text[])", [[...ids]]);
}

/** Which of the accounts have an unfinished task. */
export async function accountsWithOpenTasks(q: Queryable, accountIds: readonly string[]): Promise<Set<string>> {
  const r = await q.query<{ account_id: string }>(`SELECT account_id FROM warming_tasks WHERE account_id = ANY($1::text[]) AND status IN (${OPEN_IN})`, [[...new Set(accountIds)]]);
  return new Set(r.rows.map((x) => x.account_id));
}

/** Claims PENDING tasks not touched for olderThanMs (real time): their StartWarming was interrupted. Held like claimUnreleased. */
export async function claimStalePending(q: Queryable, olderThanMs: number, limit: number): Promise<TaskRow[]> {
  const r = await q.query<TaskRow>(
    `UPDATE warming_tasks SET updated_at = now()
     WHERE id IN (SELECT id FROM warming_tasks WHERE status = ${TaskStatus.PENDING} AND updated_at < now() - $1 * interval '1 millisecond' ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
     RETURNING ${NO_RUN_AT}`,
    [olderThanMs, limit],
  );
  return r.rows;
}

// ---- events -------------------------------------------------------------------------------------

type RawEvent = { id: number | string; task_id: string; event_type: string; at: Date; data: Record<string, string> };
const toEvent = (r: RawEvent): EventRow => ({ id: Number(r.id), task_id: r.task_id, event_type: r.event_type as EventType, at: r.at, data: r.data });

/**
 * Deletes up to `limit` of the oldest events written more than `olderThanMs` real ms ago (by id,
 * from the lowest: ids grow with time). Answers how many went.
 */
export async function deleteOldEvents(q: Queryable, olderThanMs: number, limit: number): Promise<number> {
  const r = await q.query(
    // The oldest `limit` rows by id, then the filter: a scan that stops at `limit` rows even when
    // none is old. SKIP LOCKED: replicas pruning at once take different rows instead of waiting.
    `DELETE FROM warming_events WHERE id = ANY(ARRAY(
       SELECT id FROM (SELECT id, created_at FROM warming_events ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) o
       WHERE created_at < now() - $1 * interval '1 millisecond'))`,
    [olderThanMs, limit],
  );
  return r.rowCount;
}

/**
 * The events after `after` (up to `limit`; `full: false` leaves out data but a status change's
 * `to`), with the statement's snapshot ("xmin:xmax:xip,…"): the
 * transactions in progress when those rows were read, which is what the hub needs to tell a gap
 * that may still fill (its writer is in progress) from one that never will (rolled back).
 */
export async function pollEvents(q: Queryable, after: number, limit: number, full = true): Promise<{ snapshot: string; rows: EventRow[] }> {
  // light (nobody subscribed): only what in-process listeners use, the `to` of a status change.
  const data = full ? "data" : "CASE WHEN event_type = 'status_changed' THEN jsonb_build_object('to', data->'to') ELSE '{}'::jsonb END AS data";
  const r = await q.query<RawEvent & { snap: string }>(
    `SELECT s.snap, e.id, e.task_id, e.event_type, e.at, e.data
     FROM (SELECT pg_current_snapshot()::text AS snap) s
     LEFT JOIN LATERAL (SELECT id, task_id, event_type, at, ${data} FROM warming_events WHERE id > $1 ORDER BY id LIMIT $2) e ON true`,
    [after, limit],
  );
  const snapshot = r.rows[0]?.snap ?? "";
  return { snapshot, rows: r.rows.filter((x) => x.id !== null).map(toEvent) };
}

/** The highest event id and the snapshot it was read in. */
export async function eventsHead(q: Queryable): Promise<{ snapshot: string; maxId: number }> {
  const r = await q.query<{ snap: string; max: number | string | null }>("SELECT pg_current_snapshot()::text AS snap, (SELECT max(id) FROM warming_events) AS max");
  return { snapshot: r.rows[0].snap, maxId: Number(r.rows[0].max ?? 0) };
}

/**
 * A fresh transaction id, taken in its own (committed at once) transaction: every transaction that
 * had an id before this call has an id below it. The hub's witness when a gap persists.
 */
export async function witnessXid(q: Queryable): Promise<string> {
  return (await q.query<{ x: string }>("SELECT pg_current_xact_id()::text AS x")).rows[0].x;
}

/** The current snapshot ("xmin:xmax:xip,…"). */
export async function currentSnapshot(q: Queryable): Promise<string> {
  return (await q.query<{ snap: string }>("SELECT pg_current_snapshot()::text AS snap")).rows[0].snap;
}

/** Stored events in (after, upTo], optionally for one task and some types, oldest first (a StreamEvents replay). */
export async function eventsBetween(q: Queryable, after: number, upTo: number, f: { taskId?: string; types?: readonly string[] }, limit: number): Promise<EventRow[]> {
  const where = ["id > $1", "id <= $2"];
  const params: unknown[] = [after, upTo];
  if (f.taskId) where.push(`task_id = $${params.push(f.taskId)}`);
  if (f.types && f.types.length > 0) where.push(`event_type = ANY($${params.push([...f.types])}::text[])`);
  const r = await q.query<RawEvent>(`SELECT id, task_id, event_type, at, data FROM warming_events WHERE ${where.join(" AND ")} ORDER BY id LIMIT $${params.push(limit)}`, params);
  return r.rows.map(toEvent);
}

// ---- statistics ---------------------------------------------------------------------------------

/** GetStatistics' filters; empty strings and undefined mean "any". */
export type StatsFilter = { accountId?: string; taskId?: string; platform?: string; from?: Date; to?: Date };

/** What GetStatistics reports, before mapping to the message. */
export type StatsRows = {
  byStatus: { status: number; n: number }[];
  byKind: { kind: string; done: number; failed: number; duration_sum: number; duration_n: number }[];
  byDay: { day: string; done: number; failed: number }[];
};

/**
 * Statistics over tasks and recorded actions. Tasks count when they overlap [from, to) (started
 * before `to`, not ended before `from`); actions count when they were recorded (finished_at) in it.
 */
export async function statistics(q: Queryable, f: StatsFilter): Promise<StatsRows> {
  const taskWhere: string[] = [];
  const params: unknown[] = [];
  if (f.accountId) taskWhere.push(`t.account_id = $${params.push(f.accountId)}`);
  if (f.taskId) taskWhere.push(`t.id = $${params.push(f.taskId)}`);
  if (f.platform) taskWhere.push(`t.platform = $${params.push(f.platform)}`);
  const taskOnly = [...taskWhere];
  const actionWhere = ["a.status IN ('done', 'failed')", ...taskWhere];
  const taskParams = [...params];
  if (f.from) {
    const p = params.push(f.from);
    actionWhere.push(`a.finished_at >= $${p}::timestamptz`);
    taskOnly.push(`(t.completed_at IS NULL OR t.completed_at >= $${taskParams.push(f.from)}::timestamptz)`);
  }
  if (f.to) {
    const p = params.push(f.to);
    actionWhere.push(`a.finished_at < $${p}::timestamptz`);
    taskOnly.push(`t.started_at < $${taskParams.push(f.to)}::timestamptz`);
  }
  const join = taskWhere.length > 0 ? "JOIN warming_tasks t ON t.id = a.task_id" : "";
  const [byStatus, byKind, byDay] = await Promise.all([
    q.query<{ status: number; n: number }>(`SELECT t.status, count(*)::int AS n FROM warming_tasks t ${taskOnly.length ? "WHERE " + taskOnly.join(" AND ") : ""} GROUP BY t.status ORDER BY t.status`, taskParams),
    q.query<{ kind: string; done: number; failed: number; duration_sum: number; duration_n: number }>(
      `SELECT a.kind, count(*) FILTER (WHERE a.status = 'done')::int AS done, count(*) FILTER (WHERE a.status = 'failed')::int AS failed,
         coalesce(sum(a.duration_ms), 0)::float8 AS duration_sum, count(a.duration_ms)::int AS duration_n
       FROM warming_actions a ${join} WHERE ${actionWhere.join(" AND ")} GROUP BY a.kind ORDER BY a.kind`,
      params,
    ),
    q.query<{ day: string; done: number; failed: number }>(
      `SELECT to_char(a.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
         count(*) FILTER (WHERE a.status = 'done')::int AS done, count(*) FILTER (WHERE a.status = 'failed')::int AS failed
       FROM warming_actions a ${join} WHERE ${actionWhere.join(" AND ")} GROUP BY 1 ORDER BY 1`,
      params,
    ),
  ]);
  return { byStatus: byStatus.rows, byKind: byKind.rows, byDay: byDay.rows };
}

/** A scenario clock anchor (see clock-anchor.ts): real and scenario epoch ms, and the scale. */
export type ClockAnchorRow = { realAt: number; scenarioAt: number; scale: number };

/** The scenario clock's anchor, locked for the transaction; undefined before the first. */
export async function lockClockAnchor(tx: Transaction): Promise<ClockAnchorRow | undefined> {
  const r = await tx.query<{ real_at: Date; scenario_at: Date; scale: number }>("SELECT real_at, scenario_at, scale FROM warming_clock FOR UPDATE");
  const row = r.rows[0];
  return row && { realAt: row.real_at.getTime(), scenarioAt: row.scenario_at.getTime(), scale: Number(row.scale) };
}

/** Writes the first anchor; does nothing when one exists (replicas starting at once keep the first). */
export async function insertClockAnchor(tx: Transaction, a: ClockAnchorRow): Promise<void> {
  await tx.query("INSERT INTO warming_clock (real_at, scenario_at, scale) VALUES ($1, $2, $3) ON CONFLICT (singleton) DO NOTHING", [new Date(a.realAt), new Date(a.scenarioAt), a.scale]);
}

/** Moves the anchor (a start with another scale). */
export async function updateClockAnchor(tx: Transaction, a: ClockAnchorRow): Promise<void> {
  await tx.query("UPDATE warming_clock SET real_at = $1, scenario_at = $2, scale = $3", [new Date(a.realAt), new Date(a.scenarioAt), a.scale]);
}

/** Tasks per status, from the trigger-kept warming_task_counts (migration 011). */
export async function taskCounts(q: Queryable): Promise<{ status: number; n: number }[]> {
  return (await q.query<{ status: number; n: number }>("SELECT status, n FROM warming_task_counts")).rows;
}

/**
 * RUNNING tasks whose next action is due at `now` and not claimed (at most one per task), counted
 * up to `cap` over the claim index, so a huge backlog costs a bounded scan.
 */
export async function dueCount(q: Queryable, now: Date, cap: number): Promise<number> {
  const r = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM (SELECT 1 FROM warming_due WHERE lease_until IS NULL AND run_at <= $1 LIMIT $2) d",
    [now, cap],
  );
  return r.rows[0]?.n ?? 0;
}
