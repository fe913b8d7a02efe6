import type { Logger } from "pino";
import { ACTION_KINDS } from "../platforms/driver.ts";
import { AppError, codeOf, messageOf, reasonOf, retryDelayOf } from "../errors.ts";
import type { ErrorReason } from "../errors.ts";
import type { Db } from "../store/db.ts";
import type { Clock } from "./clock.ts";
import { dayOf, progressOf } from "./planner.ts";
import { statusName } from "./task-status.ts";
import * as store from "./warming-store.ts";
import type { ActionFinish, ClaimedAction, EndedTask, EventInput, GuardedDecision, LockedTask, TaskUpdate } from "./warming-store.ts";
import { TaskStatus } from "./warming-store.ts";
import type { WarmingPeers } from "./peers.ts";
import type { WarmingMetrics } from "./warming-context.ts";
import { INTERNAL, inSpan, linksTo, tracingEnabled } from "../telemetry/tracing.ts";

/**
 * The worker: claims due actions in batches (SKIP LOCKED, so any number of workers in any number
 * of processes share the tasks), runs each through the account's platform service, and records the
 * outcomes in batches (one transaction records whatever finished while the previous one ran).
 *
 * Exactly once. Each planned action is recorded once (done or failed) under its key: recording
 * checks that the task's queue row still holds this claim's lease (seq and attempt number), so an
 * action whose lease lapsed and was taken over by another worker is not recorded (or counted)
 * twice. The platform call itself is at least once (a worker can die after the call and before
 * recording); the action's key goes along as params.idempotency_key so a platform can de-duplicate.
 *
 * Failures. RESOURCE_EXHAUSTED (rate limits), UNAVAILABLE, DEADLINE_EXCEEDED and other transport
 * failures are retried with exponential backoff (at least the RetryInfo delay the platform's Retry-After becomes). Every
 * failed attempt counts toward the task's failures in a row, except an outage of Conveer's own store
 * (ErrorInfo STORE_UNAVAILABLE, which says nothing about the account); at maxConsecutiveFailures the task
 * ends FAILED. FAILED_PRECONDITION from the platform (banned, suspended, no driver) ends it FAILED
 * at once. Other errors (NOT_FOUND target, INVALID_ARGUMENT, success=false) fail that one action
 * and the task moves on.
 */

/** Settings of the worker; every field has a default (WORKER_DEFAULTS). */
export type WorkerOptions = {
  /** Actions claimed per claim transaction. */
  batchSize: number;
  /** Actions in flight at once in this worker (claimed and not yet recorded). */
  concurrency: number;
  /** How long a claim holds an action (real ms; renewed while the call runs). */
  leaseMs: number;
  /** Failed attempts in a row that end a task FAILED. */
  maxConsecutiveFailures: number;
  /** First retry delay after a transient failure (scenario ms); doubles per attempt. */
  retryBaseMs: number;
  /** Longest retry delay (scenario ms). */
  retryMaxMs: number;
  /** Deadline of one platform call (real ms). */
  actionTimeoutMs: number;
  /** Longest idle wait before looking for due work again (real ms): covers other processes' changes. */
  idleRecheckMs: number;
  /** How often to reap lapsed leases and run the domain's upkeep (real ms). */
  maintenanceMs: number;
  /** Most outcomes recorded in one transaction. */
  recordBatch: number;
  /**
   * Claims (while backlogged) and recordings in flight at once, each its own statement on its own
   * connection (PostgreSQL; PGlite runs one statement at a time, so 1 there).
   */
  parallel: number;
};

export const WORKER_DEFAULTS: WorkerOptions = {
  // Concurrency twice the batch: the next batch is claimed while the last is being recorded.
  // Measured (bench/warming.ts, 10,000 tasks, PostgreSQL, saturated): batch 64 → 4,860 actions/s,
  // 128 → 6,000, 256 → 6,800; paced p99 lag no worse. 128 keeps each claim statement short on
  // PGlite, where it holds the one connection every other call needs.
  batchSize: 128,
  concurrency: 256,
  leaseMs: 60_000,
  maxConsecutiveFailures: 5,
  retryBaseMs: 60_000,
  retryMaxMs: 3_600_000,
  actionTimeoutMs: 30_000,
  idleRecheckMs: 1000,
  maintenanceMs: 5000,
  recordBatch: 500,
  parallel: 4,
};

/** How one attempt of an action ended. */
export type ActionOutcome =
  | { kind: "done"; durationMs: number }
  /** This action failed for good (bad target, platform said no); the task moves on. */
  | { kind: "failed"; code: string; error: string; durationMs: number }
  /**
   * Worth retrying (rate limit, outage). `ours`: the outage was Conveer's own store, not the
   * platform or the account; retried the same way, but not counted toward the failures in a row.
   */
  | { kind: "transient"; code: string; error: string; durationMs: number; retryAfterMs?: number; ours?: boolean }
  /** The account cannot act (banned, suspended, no driver): the task ends FAILED. */
  | { kind: "fatal"; code: string; error: string; durationMs: number }
  /** Not run to an end here (the worker stopped, or its lease lapsed): back to pending, not a failure. */
  | { kind: "released"; error: string };

/** The retry policy decide() applies. */
export type Policy = Pick<WorkerOptions, "maxConsecutiveFailures" | "retryBaseMs" | "retryMaxMs">;

// Ends a wait's timers; built once (an abort without a reason makes a DOMException with a stack).
const WAIT_OVER = new Error("the wait is over");
const TRANSIENT = new Set(["RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "INTERNAL", "UNKNOWN", "DATA_LOSS"]);

/** ErrorInfo reasons (src/errors.ts ErrorReason) that end the task: the account cannot act, whatever the code. */
const FATAL_REASONS: ReadonlySet<string> = new Set<ErrorReason>(["ACCOUNT_BANNED", "ACCOUNT_SUSPENDED", "ACCOUNT_NOT_ACTIVE", "INVALID_CREDENTIALS", "NO_DRIVER"]);
/** ErrorInfo reasons worth retrying (after RetryInfo's delay when there is one). */
const TRANSIENT_REASONS: ReadonlySet<string> = new Set<ErrorReason>(["RATE_LIMITED", "PLATFORM_UNAVAILABLE", "STORE_UNAVAILABLE", "NO_FREE_PROXY"]);

/**
 * Classifies a failed platform call from its google.rpc details, never its message text: the
 * ErrorInfo reason decides when there is a known one, the status code otherwise; a transient
 * failure's RetryInfo delay (the platform's Retry-After) is the least wait before the retry.
 */
export function classify(err: unknown, durationMs: number): ActionOutcome {
  const code = codeOf(err);
  const error = messageOf(err);
  const reason = reasonOf(err) ?? "";
  const kind = FATAL_REASONS.has(reason) ? "fatal" : TRANSIENT_REASONS.has(reason) ? "transient" : code === "FAILED_PRECONDITION" ? "fatal" : TRANSIENT.has(code) ? "transient" : "failed";
  if (kind === "transient") return { kind, code, error, durationMs, retryAfterMs: retryDelayOf(err), ...(reason === "STORE_UNAVAILABLE" ? { ours: true } : {}) };
  return { kind, code, error, durationMs };
}

/** The retry delay after `attempts` attempts: base × 2^(attempts−1), capped, and never less than the platform asked. */
export function retryDelay(attempts: number, p: Policy, retryAfterMs = 0): number {
  const backoff = Math.min(p.retryMaxMs, p.retryBaseMs * 2 ** Math.max(0, Math.min(30, attempts - 1)));
  return Math.max(backoff, retryAfterMs);
}

/** The ActionType enum name of an action kind ("ACTION_TYPE_LIKE_POST"). */
export const actionTypeName = (kind: string) => `ACTION_TYPE_${kind.toUpperCase()}`;

/** What recording one outcome does: the action's row, the task's fields, the events. */
export type Decision = { action: ActionFinish; task: TaskUpdate; events: EventInput[]; ended?: number };

/**
 * Decides what an outcome does to the action and its task: pure, so the rules read (and test) in
 * one place. `task` is the task row as locked for recording; `now` when the attempt finished.
 */
export function decide(task: LockedTask, a: Pick<ClaimedAction, "seq" | "attempts" | "kind" | "day">, outcome: ActionOutcome, now: Date, p: Policy): Decision {
  const base = { task_id: task.id, seq: a.seq, attempts: a.attempts };
  const info = { action_type: actionTypeName(a.kind), seq: String(a.seq), day: String(a.day), attempt: String(a.attempts) };
  const open = task.status === TaskStatus.RUNNING || task.status === TaskStatus.PAUSED;
  const running = task.status === TaskStatus.RUNNING;
  const ev = (event_type: EventInput["event_type"], data: Record<string, string>): EventInput => ({ task_id: task.id, event_type, at: now, data });

  if (outcome.kind === "released") {
    return {
      action: { ...base, status: "pending", finished_at: null, duration_ms: null, error: outcome.error },
      task: open ? { run_at: running ? now : null } : {},
      events: [ev("action_failed", { ...info, error: outcome.error, retrying: String(open), progress: String(task.progress) })],
    };
  }

  const consecutive = outcome.kind === "done" ? 0 : outcome.kind === "transient" && outcome.ours ? task.consecutive_failures : task.consecutive_failures + 1;
  const duration = Math.max(0, Math.round(outcome.durationMs));
  const failText = outcome.kind === "done" ? "" : `${outcome.code}: ${outcome.error}`;

  if (outcome.kind === "transient" && (!open || consecutive < p.maxConsecutiveFailures)) {
    if (!open) {
      // The task ended while this ran: nothing will retry it, and it is not counted.
      return {
        action: { ...base, status: "pending", finished_at: null, duration_ms: duration, error: failText },
        task: {},
        events: [ev("action_failed", { ...info, code: outcome.code, error: outcome.error, retrying: "false", duration_ms: String(duration), progress: String(task.progress) })],
      };
    }
    const retryAt = new Date(now.getTime() + retryDelay(a.attempts, p, outcome.retryAfterMs));
    return {
      action: { ...base, status: "pending", finished_at: null, duration_ms: duration, error: failText },
      task: { consecutive_failures: consecutive, next_action_at: retryAt, run_at: running ? retryAt : null },
      events: [
        ev("action_failed", {
          ...info,
          code: outcome.code,
          error: outcome.error,
          retrying: "true",
          retry_at: retryAt.toISOString(),
          failures_in_a_row: String(consecutive),
          duration_ms: String(duration),
          progress: String(task.progress),
        }),
      ],
    };
  }

  // Recorded for good: done, or failed.
  const done = outcome.kind === "done";
  const nextSeq = a.seq + 1;
  const completed = task.actions_completed + (done ? 1 : 0);
  const failed = task.actions_failed + (done ? 0 : 1);
  const progress = progressOf(nextSeq, task.total_actions);
  let to: number | undefined;
  let error = "";
  if (open && outcome.kind === "fatal") {
    to = TaskStatus.FAILED;
    error = `the platform refused ${a.kind} (action ${a.seq}): ${failText}`;
  } else if (open && !done && consecutive >= p.maxConsecutiveFailures) {
    to = TaskStatus.FAILED;
    error = `${consecutive} failed attempts in a row (limit ${p.maxConsecutiveFailures}); last: ${failText}`;
  } else if (running && nextSeq >= task.total_actions) {
    to = TaskStatus.COMPLETED;
  }
  const live = open && to === undefined;
  const nextAt = live && nextSeq < task.total_actions ? task.following_due : null;
  const set: TaskUpdate = {
    next_seq: nextSeq,
    actions_completed: completed,
    actions_failed: failed,
    consecutive_failures: consecutive,
    progress,
    current_day: dayOf(task.day1_at, task.total_days, now.getTime()),
    next_action_at: open ? nextAt : task.next_action_at,
    run_at: live && running ? nextAt : null,
  };
  const counts = { progress: String(progress), actions_completed: String(completed), actions_failed: String(failed) };
  const events: EventInput[] = [
    done
      ? ev("action_completed", { ...info, duration_ms: String(duration), ...counts })
      : ev("action_failed", { ...info, code: outcome.code, error: outcome.error, retrying: "false", failures_in_a_row: String(consecutive), duration_ms: String(duration), ...counts }),
  ];
  if (to !== undefined) {
    Object.assign(set, { status: to, error, completed_at: now, account_released: false, run_at: null, next_action_at: null });
    events.push(ev("status_changed", { from: statusName(task.status), to: statusName(to), reason: to === TaskStatus.COMPLETED ? "every planned action is recorded" : error, error, ...counts }));
  }
  return {
    action: { ...base, status: done ? "done" : "failed", finished_at: now, duration_ms: duration, error: failText },
    task: set,
    events,
    ended: to,
  };
}

/**
 * One outcome to record: the claimed action (with its task as the claim left it and when it was
 * claimed, when it comes from a claim), how it ended and when (scenario time).
 */
export type Outcome = { claimed: Pick<ClaimedAction, "task_id" | "seq" | "attempts" | "kind" | "day"> & { key?: string; task?: LockedTask; claimed_at?: Date }; outcome: ActionOutcome; at: Date };

/**
 * Records outcomes. The common case is one statement: decisions made from the task as claimed,
 * applied where the task still looks that way (store.applyDecisions). The rest — tasks paused or
 * stopped since the claim, and the reaper's outcomes (onlyExpired: only actions whose lease
 * lapsed) — go through a transaction that locks the tasks, decides from their current rows and
 * applies that the same way. Answers the tasks that ended and how many outcomes were dropped
 * (their claim had been taken over by another worker).
 */
export async function recordOutcomes(db: Db, items: readonly Outcome[], p: Policy, onlyExpired = false): Promise<{ ended: EndedTask[]; dropped: number }> {
  if (items.length === 0) return { ended: [], dropped: 0 };
  const guarded = (t: LockedTask, i: Outcome): GuardedDecision => ({
    ...decide(t, i.claimed, i.outcome, i.at, p),
    startedAt: i.claimed.claimed_at ?? null,
    key: i.claimed.key ?? `${i.claimed.task_id}:${i.claimed.seq}`,
    expect: { status: t.status, next_seq: t.next_seq, consecutive_failures: t.consecutive_failures },
  });
  let rest = items;
  const ended: EndedTask[] = [];
  let dropped = 0;
  const fast = onlyExpired ? [] : items.filter((i) => i.claimed.task);
  if (fast.length > 0) {
    const r = await store.applyDecisions(
      db,
      fast.map((i) => guarded(i.claimed.task!, i)),
    );
    ended.push(...r.ended);
    dropped += r.guarded.size - r.held.size;
    rest = items.filter((i) => !r.guarded.has(i.claimed.task_id));
  }
  if (rest.length === 0) return { ended, dropped };
  const slow = await db.transaction(async (tx) => {
    const tasks = new Map((await store.lockTasks(tx, [...new Set(rest.map((i) => i.claimed.task_id))])).map((t) => [t.id, t]));
    const ds = rest.flatMap((i) => {
      const t = tasks.get(i.claimed.task_id);
      return t ? [guarded(t, i)] : [];
    });
    const r = await store.applyDecisions(tx, ds, onlyExpired);
    return { ended: r.ended, dropped: rest.length - r.held.size };
  });
  return { ended: [...ended, ...slow.ended], dropped: dropped + slow.dropped };
}

/** Dependencies of a worker. */
export type WorkerDeps = {
  db: Db;
  peers: WarmingPeers;
  clock: Clock;
  log: Logger;
  options: WorkerOptions;
  /** None: nothing counted. */
  metrics?: WarmingMetrics;
  /** Tasks that ended (COMPLETED or FAILED) by a recorded outcome: their accounts leave WARMING. */
  onEnded: (tasks: EndedTask[]) => void;
};

/**
 * The claim loop's modes, changed only through setMode:
 * - `stopped`: not started, or stopped.
 * - `claiming`: claims due actions while slots are free; without a backlog, claims and recordings
 *   take turns (what falls due while a recording runs is claimed in one batch after it, so batches
 *   grow with the load instead of many one-action claims crowding out the recordings).
 * - `backlogged`: the last claim came back full: the next is claimed while the last is recorded,
 *   once a quarter of the slots is free (a claim costs about the same for 1 action as for 100).
 * - `waiting`: nothing claimable now: sleeps until a kick, the next due time or the idle recheck.
 *   With nothing in flight or unrecorded, the worker is idle.
 * - `draining`: stop() was called: no more claims; actions in flight finish and are recorded.
 */
export type Mode = "stopped" | "claiming" | "backlogged" | "waiting" | "draining";

/** The legal mode changes (staying in a mode is always allowed). */
const NEXT_MODES: Record<Mode, readonly Mode[]> = {
  stopped: ["claiming", "draining"],
  claiming: ["backlogged", "waiting", "draining"],
  backlogged: ["claiming", "draining"],
  waiting: ["claiming", "draining"],
  draining: ["stopped"],
};

type InFlight = { claimed: ClaimedAction; done: Promise<void> };

/** What the worker's steps work with, fixed at creation. */
type WorkerContext = Omit<WorkerDeps, "options"> & {
  o: WorkerOptions;
  /** Aborts the platform calls still running when stop's grace is over. */
  calls: AbortController;
  /** Free slots a backlogged worker waits for before its next claim. */
  minClaim: number;
  /** Claims (while backlogged) and recordings in flight at once: options.parallel, 1 on PGlite (one statement at a time). */
  parallel: number;
  /** A tracer provider is registered: each action is a trace of its own, linked to its task. */
  traced: boolean;
};

/** The worker's changing state: its mode, the actions it holds, the outcomes to record. */
export type WorkerState = {
  mode: Mode;
  /** Set by kick(); a kick that lands while the loop is busy (mid-claim) is not lost. */
  kicked: boolean;
  /** Ends the loop's current wait. */
  wake: (() => void) | undefined;
  inFlight: Map<string, InFlight>;
  /** Outcomes waiting to be recorded. */
  results: Outcome[];
  /** The recordings in progress (all of them). */
  flushing: Promise<void> | undefined;
  /** How many recordings are in progress. */
  recorders: number;
  /** A recording is starting (gathering what arrives in the same tick): no other starts meanwhile. */
  gathering: boolean;
  /** Claim failures in a row (the retry backoff). */
  errors: number;
  /** Where the repair's sweep goes on: the last task id it looked at ('' : from the start). */
  repairFrom: string;
  stats: { claimed: number; recorded: number; dropped: number; claims: number };
};

/** A fresh, stopped worker state. */
export function initialState(): WorkerState {
  return { mode: "stopped", kicked: false, wake: undefined, inFlight: new Map(), results: [], flushing: undefined, recorders: 0, gathering: false, errors: 0, repairFrom: "", stats: { claimed: 0, recorded: 0, dropped: 0, claims: 0 } };
}

/** The one place the mode changes; an illegal change is a bug and throws. */
export function setMode(state: WorkerState, to: Mode): void {
  if (state.mode === to) return;
  if (!NEXT_MODES[state.mode].includes(to)) throw new Error(`warming worker: no mode change from ${state.mode} to ${to}`);
  state.mode = to;
}

/** Whether the worker stops claiming (draining or stopped). */
const halted = (state: WorkerState) => state.mode === "draining" || state.mode === "stopped";

/** True when the loop found nothing due and nothing is in flight or waiting to be recorded. */
export function isIdle(state: WorkerState): boolean {
  return state.mode === "waiting" && state.inFlight.size === 0 && state.results.length === 0 && !state.flushing;
}

/** Wakes the loop: something may be due (a start, a resume, a recording that freed slots). */
export function kick(state: WorkerState): void {
  if (state.mode === "waiting") setMode(state, "claiming");
  state.kicked = true;
  const w = state.wake;
  state.wake = undefined;
  w?.();
}

/** An attempt's outcome as conveer_warming_actions_total labels it. */
const OUTCOME_LABELS: Record<ActionOutcome["kind"], string> = { done: "done", failed: "failed", transient: "transient", fatal: "fatal", released: "interrupted" };

const keyOf = (c: { task_id: string; seq: number }) => `${c.task_id}:${c.seq}`;

/** Runs one claimed action through its platform and queues the outcome for recording. */
function runAction(ctx: WorkerContext, state: WorkerState, c: ClaimedAction): void {
  const t0 = performance.now();
  const { calls, o } = ctx;
  const done = (async () => {
    let outcome: ActionOutcome;
    try {
      const kind = ACTION_KINDS.indexOf(c.kind as (typeof ACTION_KINDS)[number]);
      if (kind < 0) throw new AppError("INVALID_ARGUMENT", `unknown action kind ${JSON.stringify(c.kind)}`);
      const execute = () =>
        ctx.peers.platforms(c.platform).executeAction(
          { accountId: c.account_id, actionType: kind + 1, params: { idempotency_key: c.key, warming_task_id: c.task_id, warming_seq: String(c.seq) } },
          { signal: calls.signal, timeoutMs: o.actionTimeoutMs },
        );
      const res = ctx.traced ? await traceAction(c, execute) : await execute();
      const ms = performance.now() - t0;
      outcome = res.success ? { kind: "done", durationMs: ms } : { kind: "failed", code: "ACTION_FAILED", error: res.error || "the platform reported the action as not done", durationMs: ms };
    } catch (err) {
      outcome = calls.signal.aborted ? { kind: "released", error: "interrupted: the worker stopped before the action finished" } : classify(err, performance.now() - t0);
    }
    ctx.metrics?.warmingActionEnded(c.platform, c.kind, OUTCOME_LABELS[outcome.kind]);
    state.results.push({ claimed: c, outcome, at: new Date(ctx.clock.now()) });
    flush(ctx, state);
  })();
  state.inFlight.set(keyOf(c), { claimed: c, done });
}

/**
 * One warming action as a trace of its own (a root span: the worker's loop is no call), linked to
 * the span of the call that started its task, so a trace viewer leads from either to the other.
 */
function traceAction<T>(c: ClaimedAction, execute: () => Promise<T>): Promise<T> {
  const attributes = { "conveer.warming.task_id": c.task_id, "conveer.warming.seq": c.seq, "conveer.warming.attempt": c.attempts, "conveer.platform": c.platform, "conveer.warming.action": c.kind };
  return inSpan(`warming action ${c.kind}`, { root: true, kind: INTERNAL, links: linksTo(c.traceparent), attributes }, execute);
}

/**
 * Records whatever has finished: up to `parallel` recordings at once (each its own batch, its own
 * transaction; their tasks are disjoint), so a backlog's recordings overlap instead of queueing.
 * Outcomes that arrive while every recording is busy go in the next batch.
 */
function flush(ctx: WorkerContext, state: WorkerState): void {
  if (state.gathering || state.recorders >= ctx.parallel) return;
  state.recorders++;
  state.gathering = true;
  const one = recordAll(ctx, state).finally(() => {
    if (--state.recorders === 0) state.flushing = undefined;
    if (state.results.length > 0) flush(ctx, state);
  });
  state.flushing = state.flushing ? Promise.all([state.flushing, one]).then(() => undefined) : one;
}

/** The recording flush() runs: batches of recordBatch until nothing is left; a failed batch is retried with backoff. */
async function recordAll(ctx: WorkerContext, state: WorkerState): Promise<void> {
  const { o, log } = ctx;
  const { results, inFlight, stats } = state;
  let failures = 0;
  // One tick's grace: outcomes that arrive together (fast platforms) are recorded together.
  await new Promise((r) => setImmediate(r));
  state.gathering = false;
  while (results.length > 0) {
    const batch = results.splice(0, o.recordBatch);
    try {
      const out = await recordOutcomes(ctx.db, batch, o);
      stats.recorded += batch.length - out.dropped;
      stats.dropped += out.dropped;
      if (out.dropped > 0) log.warn({ dropped: out.dropped }, "outcomes not recorded: their claim lapsed and another worker took the actions over");
      if (out.ended.length > 0) ctx.onEnded(out.ended);
    } catch (err) {
      // Keep them (their leases are renewed meanwhile) and try again shortly.
      results.unshift(...batch);
      failures++;
      if (halted(state) && failures >= 3) {
        // Stopping with the store unreachable: give up; the leases lapse and another worker runs these again.
        log.error({ err: String(err), outcomes: results.length }, "could not record warming outcomes before stopping; their actions will run again after the lease lapses");
        for (const i of results.splice(0)) inFlight.delete(keyOf(i.claimed));
        return;
      }
      log.warn({ err: String(err), outcomes: batch.length }, "recording warming outcomes failed; retrying");
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** failures)));
      continue;
    }
    for (const i of batch) inFlight.delete(keyOf(i.claimed));
    kick(state);
  }
}

/**
 * Waits for a kick, a due time, or the idle recheck; returns at once when work may be due. `known`:
 * the earliest run_at after the last claim's now (from the claim itself), when known.
 */
async function waitForWork(ctx: WorkerContext, state: WorkerState, canClaim: boolean, known?: Date | null): Promise<void> {
  const ac = new AbortController();
  if (state.kicked) return;
  const waits: Promise<unknown>[] = [new Promise<void>((r) => (state.wake = r))];
  let delay = ctx.o.idleRecheckMs;
  if (canClaim) {
    const next = known === undefined ? await store.nextRunAt(ctx.db) : known;
    if (state.kicked) return;
    if (next) {
      const ms = next.getTime() - ctx.clock.now();
      // Due now but not claimed: locked by another claim or a pause in progress; look again shortly.
      if (ms <= 0) delay = 2;
      else waits.push(ctx.clock.sleep(ms, ac.signal).catch(() => {}));
    }
    if (halted(state)) return;
    if (delay > 2) setMode(state, "waiting");
  }
  if (halted(state)) return;
  const timer = new Promise<void>((r) => {
    const t = setTimeout(r, delay);
    ac.signal.addEventListener("abort", () => clearTimeout(t), { once: true });
  });
  waits.push(timer);
  await Promise.race(waits);
  ac.abort(WAIT_OVER);
  state.wake = undefined;
}

/** One turn of the loop: claim what is due into the free slots, or wait. */
async function step(ctx: WorkerContext, state: WorkerState): Promise<void> {
  const { o } = ctx;
  const { stats } = state;
  // Reset before reading the state it is about: a kick from here on makes the wait return at once.
  state.kicked = false;
  const free = o.concurrency - state.inFlight.size;
  if (state.mode === "backlogged" && free < ctx.minClaim && state.inFlight.size > 0) return waitForWork(ctx, state, false);
  if (state.mode !== "backlogged" && state.flushing) {
    await state.flushing;
    return;
  }
  let next: Date | null | undefined;
  if (free > 0) {
    // Backlogged, the free slots are claimed by up to `parallel` claims at once (SKIP LOCKED: they take different tasks).
    const n = state.mode === "backlogged" ? Math.max(1, Math.min(ctx.parallel, Math.floor(free / o.batchSize))) : 1;
    const wants = Array.from({ length: n }, (_, i) => Math.min(o.batchSize, free - i * o.batchSize));
    if (state.mode === "waiting") setMode(state, "claiming");
    const now = new Date(ctx.clock.now());
    const settled = await Promise.allSettled(wants.map((want) => store.claimDue(ctx.db, now, want, o.leaseMs)));
    let full = true;
    for (const [i, r] of settled.entries()) {
      if (r.status === "rejected") continue;
      stats.claims++;
      stats.claimed += r.value.claimed.length;
      for (const c of r.value.claimed) ctx.metrics?.warmingActionStarted((now.getTime() - c.due_at.getTime()) / 1000);
      for (const c of r.value.claimed) runAction(ctx, state, c);
      if (r.value.claimed.length < wants[i]) {
        full = false;
        next = r.value.nextRunAt;
      }
    }
    // A failed claim fails the step (after what the others claimed runs): the loop backs off.
    const failed = settled.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    state.errors = 0;
    if (halted(state)) return;
    setMode(state, full ? "backlogged" : "claiming");
    if (state.mode === "backlogged") return;
  }
  await waitForWork(ctx, state, free > 0, next);
}

/** The claim loop, until stop(). A failed claim is retried with backoff (a kick cuts the wait short). */
async function loop(ctx: WorkerContext, state: WorkerState): Promise<void> {
  while (!halted(state)) {
    try {
      await step(ctx, state);
    } catch (err) {
      if (halted(state)) break;
      state.errors++;
      ctx.log.warn({ err: String(err) }, "claiming warming actions failed; retrying");
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(5000, 100 * 2 ** Math.min(state.errors, 6)));
        state.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }
}

/** Extends the leases of everything claimed here and not yet recorded. */
async function renew(ctx: WorkerContext, state: WorkerState): Promise<void> {
  const held = [...state.inFlight.values()].map((f) => ({ task_id: f.claimed.task_id, seq: f.claimed.seq, attempts: f.claimed.attempts }));
  if (held.length > 0) await store.renewLeases(ctx.db, held, ctx.o.leaseMs);
}

/** Puts actions whose lease lapsed (their worker died) back to pending, claimable at once. */
async function reap(ctx: WorkerContext, state: WorkerState): Promise<number> {
  const expired = (await store.expiredLeases(ctx.db, 500)).filter((e) => !state.inFlight.has(keyOf(e)));
  if (expired.length === 0) return 0;
  const now = new Date(ctx.clock.now());
  const out = await recordOutcomes(
    ctx.db,
    expired.map((e) => ({ claimed: e, outcome: { kind: "released", error: "the lease lapsed: the worker running it stopped or hung; running it again" } as const, at: now })),
    ctx.o,
    true,
  );
  const n = expired.length - out.dropped;
  if (n > 0) {
    ctx.log.warn({ actions: n }, "took over warming actions whose lease lapsed");
    kick(state);
  }
  return n;
}

/**
 * Repairs RUNNING tasks left with nothing to claim (should not happen): each round looks at the
 * next REPAIR_SLICE tasks by id, a sweep of every task over as many rounds as it takes (100,000
 * tasks: 20 rounds, 100 s at the default maintenanceMs), each round's scan bounded.
 */
async function repair(ctx: WorkerContext, state: WorkerState): Promise<void> {
  const { tasks: stuck, next } = await store.strandedTasks(ctx.db, state.repairFrom, REPAIR_SLICE, 100);
  state.repairFrom = next;
  if (stuck.length === 0) return;
  ctx.log.warn({ tasks: stuck.map((t) => t.id) }, "repairing warming tasks with nothing claimable");
  await ctx.db.transaction(async (tx) => {
    const locked = await store.lockTasks(
      tx,
      stuck.map((t) => t.id),
    );
    await store.updateTasks(
      tx,
      locked.filter((t) => t.status === TaskStatus.RUNNING && t.run_at === null && t.next_seq < t.total_actions).map((t) => ({ id: t.id, set: { run_at: t.next_action_at ?? new Date(ctx.clock.now()) } })),
    );
  });
  kick(state);
}

/** Tasks the repair looks at per upkeep round. */
const REPAIR_SLICE = 5000;

/** The worker's part of the upkeep (release.ts runs it on the upkeep timer): lapsed leases, a slice of the stranded-task sweep. */
async function upkeep(ctx: WorkerContext, state: WorkerState): Promise<void> {
  await reap(ctx, state);
  await repair(ctx, state);
}

/**
 * Stops claiming; lets actions in flight finish and be recorded for up to graceMs, then aborts
 * the rest (recorded back to pending, so the next worker runs them at once).
 */
async function drain(ctx: WorkerContext, state: WorkerState, loopDone: Promise<void> | undefined, graceMs: number): Promise<void> {
  setMode(state, "draining");
  kick(state);
  await loopDone;
  const pending = () => Promise.all([...state.inFlight.values()].map((f) => f.done));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([pending(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  ctx.calls.abort(new AppError("CANCELLED", "the warming worker is stopping"));
  await pending();
  while (state.flushing || state.results.length > 0) {
    flush(ctx, state);
    await state.flushing;
  }
  setMode(state, "stopped");
}

/** Creates a worker; start() runs its loop, stop() drains it. */
export function createWorker(deps: WorkerDeps) {
  const o = deps.options;
  const ctx: WorkerContext = {
    ...deps,
    o,
    calls: new AbortController(),
    minClaim: Math.max(1, Math.floor(Math.min(o.batchSize, o.concurrency) / 4)),
    parallel: deps.db.kind === "pglite" ? 1 : Math.max(1, o.parallel),
    traced: tracingEnabled(),
  };
  const state = initialState();
  let loopDone: Promise<void> | undefined;
  let renewTimer: NodeJS.Timeout | undefined;

  return {
    /** Starts the claim loop and the lease renewal. */
    start(): void {
      if (loopDone) return;
      setMode(state, "claiming");
      loopDone = loop(ctx, state);
      renewTimer = setInterval(() => void renew(ctx, state).catch((err) => ctx.log.warn({ err: String(err) }, "renewing warming leases failed")), Math.max(50, o.leaseMs / 3));
      renewTimer.unref();
    },

    /** Stops claiming; actions in flight get graceMs to finish, the rest are aborted; all are recorded. */
    async stop(graceMs = 5000): Promise<void> {
      clearInterval(renewTimer);
      await drain(ctx, state, loopDone, graceMs);
      loopDone = undefined;
    },

    /** Wakes the loop: something may be due (a start, a resume). */
    kick: () => kick(state),

    /** The worker's part of the upkeep (lapsed leases, stranded tasks); the caller runs it on its timer. */
    upkeep: () => upkeep(ctx, state),

    /** True when the loop found nothing due and nothing is in flight or waiting to be recorded. */
    isIdle: () => isIdle(state),

    /** Counters since start. */
    stats: () => ({ ...state.stats, inFlight: state.inFlight.size }),
  };
}

/** The worker's API. */
export type Worker = ReturnType<typeof createWorker>;
