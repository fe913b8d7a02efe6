import { AppError } from "../errors.ts";
import { dayOf } from "./planner.ts";
import type { TaskRow, TaskUpdate } from "./warming-store.ts";
import { OPEN_STATUSES, TaskStatus } from "./warming-store.ts";

/**
 * A task's status rules, pure: PENDING → RUNNING ⇄ PAUSED → COMPLETED | FAILED | STOPPED (the
 * last three final). The operator's requests are a table; each update below is what one change
 * writes to the task row. The worker's own changes (COMPLETED, FAILED) are decide()'s, in worker.ts.
 */

/** The enum name of a status ("WARMING_STATUS_RUNNING"). */
export function statusName(s: number): string {
  const name = Object.entries(TaskStatus).find(([, v]) => v === s)?.[0];
  return `WARMING_STATUS_${name ?? "UNSPECIFIED"}`;
}

/** An operator's request about a task (PauseWarming, ResumeWarming, StopWarming). */
export type Request = "pause" | "resume" | "stop";

/** Which statuses each request applies to, where it leads (asking again there is a no-op), and why it is refused elsewhere. */
const REQUESTS: Record<Request, { from: readonly number[]; to: number; refusal: (from: string) => string }> = {
  pause: { from: [TaskStatus.RUNNING], to: TaskStatus.PAUSED, refusal: (from) => `is ${from}; only a WARMING_STATUS_RUNNING task can be paused` },
  resume: { from: [TaskStatus.PAUSED], to: TaskStatus.RUNNING, refusal: (from) => `is ${from}; only a WARMING_STATUS_PAUSED task can be resumed` },
  stop: { from: OPEN_STATUSES, to: TaskStatus.STOPPED, refusal: (from) => `already ended (${from}); only an unfinished task can be stopped` },
};

/** Whether `request` changes t: false when t is already where it leads; FAILED_PRECONDITION when it does not apply to t's status. */
export function applies(request: Request, t: Pick<TaskRow, "id" | "status">): boolean {
  const r = REQUESTS[request];
  if (t.status === r.to) return false;
  if (!r.from.includes(t.status)) throw new AppError("FAILED_PRECONDITION", `task ${t.id} ${r.refusal(statusName(t.status))}`);
  return true;
}

/** PauseWarming's update (undefined: already paused). Claims skip a task that is not RUNNING, so it takes effect at once. */
export function pause(t: TaskRow, now: number): TaskUpdate | undefined {
  if (!applies("pause", t)) return undefined;
  return { status: TaskStatus.PAUSED, run_at: null, paused_at: new Date(now) };
}

/** StopWarming's update (undefined: already stopped): final, and the account is to be released. */
export function stop(t: TaskRow, now: number): TaskUpdate | undefined {
  if (!applies("stop", t)) return undefined;
  return { status: TaskStatus.STOPPED, run_at: null, next_action_at: null, completed_at: new Date(now), account_released: false, current_day: dayOf(t.day1_at, t.total_days, now) };
}

/**
 * The update that makes a PENDING or PAUSED task RUNNING (or COMPLETED when nothing is left).
 * `inFlight`: an action claimed before a pause still runs; its recording schedules the next.
 */
export function run(t: TaskRow, now: number, inFlight = false): TaskUpdate {
  if (t.next_seq >= t.total_actions) {
    return { status: TaskStatus.COMPLETED, completed_at: new Date(now), run_at: null, next_action_at: null, account_released: false, progress: 100, paused_at: null, current_day: t.total_days };
  }
  const at = t.next_action_at ?? new Date(now);
  return { status: TaskStatus.RUNNING, run_at: inFlight ? null : at, paused_at: null, current_day: dayOf(t.day1_at, t.total_days, now) };
}

/**
 * StartWarming's last step, once the account is WARMING: PENDING → RUNNING. A task stopped while
 * starting had its release look before the account became WARMING: it is released again.
 */
export function started(t: TaskRow, now: number): TaskUpdate | undefined {
  if (t.status === TaskStatus.PENDING) return run(t, now);
  return t.account_released ? { account_released: false } : undefined;
}

/** An interrupted start whose account did become WARMING: RUNNING, as StartWarming would have left it. */
export function recovered(t: TaskRow, now: number): TaskUpdate | undefined {
  return t.status === TaskStatus.PENDING ? run(t, now) : undefined;
}

/** The error of a start interrupted before the account became WARMING. */
export const INTERRUPTED_START = "StartWarming was interrupted before the account became WARMING";

/** An interrupted start whose account never became WARMING: FAILED. */
export function abandoned(t: TaskRow, now: number): TaskUpdate | undefined {
  return t.status === TaskStatus.PENDING ? { status: TaskStatus.FAILED, error: `${INTERRUPTED_START}; start it again`, completed_at: new Date(now) } : undefined;
}
