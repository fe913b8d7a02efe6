import { activeTraceparent } from "../telemetry/tracing.ts";
import { recordAudit } from "../audit/audit-log.ts";
import type { AuditAction } from "../audit/audit-log.ts";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { AppError, codeOf, invalidArgument, messageOf, notFound, quote, resourceInfo } from "../errors.ts";
import type { Transaction } from "../store/db.ts";
import { checkId } from "../store/ids.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import { toTask } from "./messages.ts";
import { mostPlannedActions, planActions, planDays, plannedCount } from "./planner.ts";
import type { PlannedAction } from "./planner.ts";
import { logTaskEnded, release } from "./release.ts";
import { DEFAULT_SCENARIO_ID, MAX_DAYS, MAX_PLANNED_ACTIONS } from "./scenario.ts";
import type { Scenario } from "./scenario.ts";
import { applies, pause, run, started, statusName, stop } from "./task-status.ts";
import type { WarmingContext } from "./warming-context.ts";
import { DAY_MS } from "./warming-context.ts";
import * as store from "./warming-store.ts";
import type { TaskRow, TaskUpdate } from "./warming-store.ts";
import { OPEN_STATUSES, TaskStatus } from "./warming-store.ts";

/**
 * A task's life as the API drives it: StartWarming (validate, write the plan, make the account
 * WARMING, then RUNNING), Pause/Resume/Stop, and the one way a status changes (`transition`).
 */

/** Planned actions written per statement by StartWarming (bench/big-plan.ts measures the choice). */
const PLAN_BATCH = 500;

/** The scenario by id (empty: the default); NOT_FOUND naming the known ones. */
export function scenarioFor(ctx: WarmingContext, id: string): Scenario {
  const key = id || DEFAULT_SCENARIO_ID;
  const s = ctx.scenarios.get(key);
  if (!s) throw new AppError("NOT_FOUND", `scenario ${quote(key)} not found; use one of ${[...ctx.scenarios.keys()].join(", ")} (or leave scenario_id empty for ${DEFAULT_SCENARIO_ID})`, { details: [resourceInfo("scenario", key, "no such scenario")] });
  return s;
}

/** GetWarmingStatus's read: the task row, NOT_FOUND when there is none. */
export async function readTask(ctx: WarmingContext, id: string): Promise<TaskRow> {
  checkId(id, "task_id");
  const t = await store.getTask(ctx.db, id);
  if (!t) throw notFound("warming task", id);
  return t;
}

/** RUNNING for WARMING_STATUS_RUNNING: how the audit log names statuses (as account.status does). */
const shortStatus = (s: number) => statusName(s).replace("WARMING_STATUS_", "");

/** An operator's change of a task, for the audit log: the action and the caller's address. */
export type AuditedChange = { action: Extract<AuditAction, `warming.${string}`>; peer: string };

/**
 * Changes a task's status in one transaction with its status_changed event (and, for an
 * operator's change, its audit record): `change` sees the locked row and answers the update, or
 * undefined for no change. Releases the account when the task ended, wakes the worker when it runs.
 */
export async function transition(
  ctx: WarmingContext,
  id: string,
  reason: string,
  author: string,
  change: (t: TaskRow, tx: Transaction) => TaskUpdate | undefined | Promise<TaskUpdate | undefined>,
  audited?: AuditedChange,
): Promise<TaskRow> {
  let ended = false;
  const row = await ctx.db.transaction(async (tx) => {
    const t = await store.lockTask(tx, id);
    if (!t) throw notFound("warming task", id);
    const set = await change(t, tx);
    if (!set) return t;
    const [u] = await store.updateTasks(tx, [{ id, set }]);
    ended = !OPEN_STATUSES.includes(u.status) && OPEN_STATUSES.includes(t.status);
    const data: Record<string, string> = { from: statusName(t.status), to: statusName(u.status), reason, by: author, progress: String(u.progress) };
    if (u.error) data.error = u.error;
    await store.insertEvents(tx, [{ task_id: id, event_type: "status_changed", at: new Date(ctx.clock.now()), data }]);
    if (audited) await recordAudit(tx, { name: author, peer: audited.peer }, { action: audited.action, accountId: t.account_id, target: id, detail: `${shortStatus(t.status)} -> ${shortStatus(u.status)}: ${reason}` });
    return u;
  });
  if (ended) logTaskEnded(ctx, row, row.status === TaskStatus.FAILED ? row.error || reason : reason);
  if (!row.account_released) void release(ctx, [row]);
  if (row.status === TaskStatus.RUNNING) ctx.worker.kick();
  ctx.hub.poke();
  return row;
}

/** A peer's failure as this service's error: the same code, saying which peer. */
function peerError(err: unknown, doing: string): AppError {
  if (err instanceof AppError) return err;
  const code = codeOf(err);
  return new AppError((code === "UNKNOWN" ? "UNAVAILABLE" : code) as AppError["code"], `${doing}: ${messageOf(err)}`, { cause: err });
}

/** INVALID_ARGUMENT unless duration_days is 0 or 1..MAX_DAYS and its plan fits MAX_PLANNED_ACTIONS (naming the most days that fit). */
function checkDuration(scenario: Scenario, durationDays: number): void {
  if (!Number.isInteger(durationDays) || durationDays < 0 || durationDays > MAX_DAYS) {
    throw invalidArgument("duration_days", `must be 0 (the scenario's ${scenario.totalDays} days) or 1 to ${MAX_DAYS}, got ${durationDays}`);
  }
  const most = mostPlannedActions(scenario, durationDays);
  if (most > MAX_PLANNED_ACTIONS) {
    let fits = durationDays - 1;
    while (fits > 0 && mostPlannedActions(scenario, fits) > MAX_PLANNED_ACTIONS) fits--;
    throw invalidArgument(
      "duration_days",
      `${durationDays} would give scenario ${scenario.id} up to ${most} planned actions, more than the limit of ${MAX_PLANNED_ACTIONS} per task; ${fits > 0 ? `use at most ${fits} days` : "no duration fits"}`,
    );
  }
}

/** The account to warm: no unfinished task (ALREADY_EXISTS), known (NOT_FOUND), ACTIVE and on a known platform (FAILED_PRECONDITION). */
async function warmableAccount(ctx: WarmingContext, accountId: string) {
  const existing = await store.openTaskOf(ctx.db, accountId);
  if (existing) throw new AppError("ALREADY_EXISTS", `account ${accountId} already has an unfinished warming task ${existing.id} (${statusName(existing.status)}); stop it first or wait for it to end`);
  let account;
  try {
    account = await ctx.peers.accounts.getAccount({ accountId });
  } catch (err) {
    if (codeOf(err) === "NOT_FOUND") throw notFound("account", accountId);
    throw peerError(err, "reading the account from AccountService failed");
  }
  if (account.status !== AccountStatus.ACTIVE) {
    throw new AppError("FAILED_PRECONDITION", `account ${accountId} is ACCOUNT_STATUS_${AccountStatus[account.status]}; warming needs ACCOUNT_STATUS_ACTIVE`);
  }
  if (!isPlatform(account.platform)) throw new AppError("FAILED_PRECONDITION", `account ${accountId} is on ${quote(account.platform)}, not one of ${PLATFORMS.join(", ")}`);
  return account;
}

/**
 * Writes a PENDING task's plan in batches of PLAN_BATCH rows, each its own statement, letting
 * other work run between them: PGlite runs one statement at a time (a transaction holds it whole)
 * and blocks the event loop while it runs, so one statement or one transaction for a large plan
 * would stall every other call. The task stays PENDING, never claimed, until the plan is whole;
 * a start that dies halfway is settled by upkeep (the account never became WARMING: FAILED).
 */
async function writePlan(ctx: WarmingContext, taskId: string, first: PlannedAction, rest: Iterator<PlannedAction>): Promise<void> {
  let batch: PlannedAction[] = [first];
  for (let next = rest.next(); ; next = rest.next()) {
    if (!next.done) batch.push(next.value);
    if (batch.length === PLAN_BATCH || (next.done && batch.length > 0)) {
      await store.insertActions(ctx.db, taskId, batch);
      batch = [];
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (next.done) return;
  }
}

/** Removes a task whose start failed (logged, not thrown: the upkeep settles it otherwise). */
async function dropTask(ctx: WarmingContext, id: string, why: string): Promise<void> {
  await store.deleteTask(ctx.db, id).catch((e) => ctx.log.warn({ task_id: id, err: String(e) }, `could not remove a task whose ${why}; upkeep settles it`));
}

/** StartWarming: ACTIVE account, no unfinished task, known scenario; the account becomes WARMING and the task RUNNING. */
export async function startTask(ctx: WarmingContext, req: { accountId: string; scenarioId: string; durationDays: number }, author: string, peer = ""): Promise<WarmingTask> {
  checkId(req.accountId, "account_id");
  const scenario = scenarioFor(ctx, req.scenarioId);
  checkDuration(scenario, req.durationDays);
  const account = await warmableAccount(ctx, req.accountId);

  const id = ctx.newId();
  const startAt = new Date(ctx.clock.now());
  const planOpts = { durationDays: req.durationDays, startAt, seed: id };
  const days = planDays(scenario, planOpts);
  const total = plannedCount(days);
  const actions = planActions(scenario, planOpts, days);
  const first = actions.next();
  const day1 = new Date(Math.floor(days[0].windowStart.getTime() / DAY_MS) * DAY_MS);
  try {
    const task = { id, account_id: req.accountId, platform: account.platform, scenario_id: scenario.id, duration_days: req.durationDays, total_days: days.length, day1_at: day1, started_at: startAt, traceparent: activeTraceparent() };
    await store.insertTask(ctx.db, task, total, first.done ? null : first.value.at);
  } catch (err) {
    if (sqlState(err) === PgError.uniqueViolation) throw new AppError("ALREADY_EXISTS", `account ${req.accountId} already has an unfinished warming task; stop it first or wait for it to end`);
    throw err;
  }
  try {
    if (!first.done) await writePlan(ctx, id, first.value, actions);
  } catch (err) {
    await dropTask(ctx, id, "plan was not written");
    throw err;
  }
  try {
    await ctx.peers.accounts.updateStatus({ accountId: req.accountId, status: AccountStatus.WARMING, reason: `warming task ${id} (scenario ${scenario.id})` });
  } catch (err) {
    await dropTask(ctx, id, "start failed");
    if (codeOf(err) === "FAILED_PRECONDITION") throw new AppError("FAILED_PRECONDITION", `account ${req.accountId} cannot become WARMING: ${messageOf(err)}`);
    throw peerError(err, "marking the account WARMING failed");
  }
  const row = await transition(ctx, id, `started (scenario ${scenario.id}, ${total} actions over ${days.length} days)`, author, (t) => started(t, ctx.clock.now()), { action: "warming.start", peer });
  return toTask(row, ctx.clock.now());
}

/** PauseWarming: RUNNING → PAUSED at once (an action in flight may finish; none starts). Pausing a paused task is a no-op. */
export async function pauseTask(ctx: WarmingContext, taskId: string, author: string, peer = ""): Promise<WarmingTask> {
  checkId(taskId, "task_id");
  const row = await transition(ctx, taskId, "paused", author, (t) => pause(t, ctx.clock.now()), { action: "warming.pause", peer });
  return toTask(row, ctx.clock.now());
}

/** ResumeWarming: PAUSED → RUNNING; what fell due meanwhile runs now, in order. Resuming a running task is a no-op. */
export async function resumeTask(ctx: WarmingContext, taskId: string, author: string, peer = ""): Promise<WarmingTask> {
  checkId(taskId, "task_id");
  const row = await transition(ctx, taskId, "resumed", author, async (t, tx) => {
    if (!applies("resume", t)) return undefined;
    // An action claimed before the pause and still in flight: its recording schedules the next.
    return run(t, ctx.clock.now(), await store.inFlight(tx, t.id));
  }, { action: "warming.resume", peer });
  return toTask(row, ctx.clock.now());
}

/** StopWarming: final; STOPPED, the account back to ACTIVE. Stopping a stopped task is a no-op. */
export async function stopTask(ctx: WarmingContext, taskId: string, reason: string, author: string, peer = ""): Promise<WarmingTask> {
  checkId(taskId, "task_id");
  if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
  const row = await transition(ctx, taskId, reason || "stopped", author, (t) => stop(t, ctx.clock.now()), { action: "warming.stop", peer });
  return toTask(row, ctx.clock.now());
}
