import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import {
  ActionTypeStatisticsSchema,
  DayStatisticsSchema,
  WarmingEventSchema,
  WarmingScenarioDaySchema,
  WarmingScenarioSchema,
  WarmingStatisticsSchema,
  WarmingTaskSchema,
} from "../gen/conveer/v1/warming_pb.js";
import type { WarmingEvent, WarmingScenario, WarmingStatistics, WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import { checkId } from "../store/ids.ts";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { AppError, codeOf, invalidArgument, messageOf, notFound, quote } from "../errors.ts";
import type { Db, Queryable } from "../store/db.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import type { Clock } from "./clock.ts";
import { createEventHub } from "./events.ts";
import type { EventHubOptions } from "./events.ts";
import type { WarmingPeers } from "./peers.ts";
import { mostPlannedActions, planActions, planDays, plannedCount } from "./planner.ts";
import type { PlannedAction } from "./planner.ts";
import { DEFAULT_SCENARIO_ID, MAX_DAYS, MAX_PLANNED_ACTIONS } from "./scenario.ts";
import type { Scenario } from "./scenario.ts";
import * as store from "./warming-store.ts";
import type { EndedTask, EventRow, TaskRow, TaskUpdate } from "./warming-store.ts";
import { EVENT_TYPES, OPEN_STATUSES, TaskStatus } from "./warming-store.ts";
import { WORKER_DEFAULTS, actionTypeName, createWorker, dayOf, statusName } from "./worker.ts";
import type { WorkerOptions } from "./worker.ts";

/**
 * The warming domain: StartWarming, Pause/Resume/Stop, status, statistics and the event stream
 * over the store, plus the worker that runs the plans. Transport-free.
 *
 * The plan is materialized. StartWarming writes every planned action as a warming_actions row
 * (INSERT … SELECT unnest in batches of 500: ~300 rows for basic, ~1,200 for intensive, at most
 * MAX_PLANNED_ACTIONS, 50,000) rather than re-planning
 * lazily, because: (1) claiming needs rows to lock (FOR UPDATE SKIP LOCKED shares work between
 * workers at action granularity); (2) the key's UNIQUE constraint is what makes recording
 * exactly-once enforceable by the database; (3) a running task must not change under an operator
 * who edits or removes its scenario file, or under a planner change in a new release: the stored
 * plan is the contract for that task's keys; (4) statistics per action type and per day are
 * plain SQL over the rows. The price is storage (one ~100-byte row per action, ~13 MB with its
 * indexes for the largest plan), which warming_actions pays once per task.
 *
 * Account status. StartWarming needs ACTIVE and makes it WARMING (AccountService.UpdateStatus).
 * When the task ends — COMPLETED, STOPPED, or FAILED for any reason, including too many failures
 * in a row — the account goes back to ACTIVE if it is still WARMING: a failed warming says nothing
 * about the account itself, and leaving it WARMING would block a new task. If the platform found
 * it banned or suspended, the platform service has already set BANNED/SUSPENDED, and that stays.
 * The release is retried (an outbox flag on the task) until AccountService accepts it.
 *
 * Pause does not move the plan: days and windows stay where they were planned. What fell due
 * during a pause runs on resume, in plan order, one action of the task at a time.
 */

/** Settings; every field has a default. */
export type WarmingOptions = Partial<WorkerOptions> & {
  /** Run the worker loop in this process (default true); false serves the API only. */
  runWorker?: boolean;
  /** The event hub's settings. */
  events?: EventHubOptions;
  /** A task left PENDING this long (real ms) had its StartWarming interrupted; upkeep settles it. Default 60 s. */
  startRecoveryMs?: number;
  /** An ended task whose account release failed is retried after this long (real ms). Default 30 s. */
  releaseRetryMs?: number;
  /** Events are deleted this long (real ms) after they were written; 0 keeps them forever. Default 30 days. */
  eventRetentionMs?: number;
};

/** Dependencies of the warming domain. */
export type WarmingDeps = {
  db: Db;
  peers: WarmingPeers;
  clock: Clock;
  newId: () => string;
  log: Logger;
  /** Scenarios by id (builtinScenarios() or loadScenarios(CONVEER_SCENARIOS_DIR)). */
  scenarios: ReadonlyMap<string, Scenario>;
  options?: WarmingOptions;
};

/** StreamEvents' request, as the domain takes it. */
export type EventsRequest = { taskId: string; eventTypes: readonly string[]; afterEventId: string };

/** GetStatistics' request, as the domain takes it. */
export type StatisticsRequest = { accountId: string; taskId: string; platform: string; from?: Timestamp; to?: Timestamp };

const DAY_MS = 86_400_000;
const EVENT_PRUNE_BATCH = 5000;
/** Planned actions written per statement by StartWarming (bench/big-plan.ts measures the choice). */
const PLAN_BATCH = 500;

/** Creates the warming domain; start() runs the event hub and the worker, stop() drains them. */
export function createWarming(deps: WarmingDeps) {
  const { db, peers, clock, newId, log, scenarios } = deps;
  const opts = deps.options ?? {};
  const workerOptions: WorkerOptions = { ...WORKER_DEFAULTS, ...definedOnly(opts) };
  const runWorker = opts.runWorker ?? true;
  const startRecoveryMs = opts.startRecoveryMs ?? 60_000;
  const releaseRetryMs = opts.releaseRetryMs ?? 30_000;
  const eventRetentionMs = opts.eventRetentionMs ?? 30 * DAY_MS;
  const hub = createEventHub({ db, log, options: opts.events });
  const releasing = new Set<string>();
  let started = false;
  let upkeepTimer: NodeJS.Timeout | undefined;
  let upkeeping: Promise<void> | undefined;

  const worker = createWorker({
    db,
    peers,
    clock,
    log,
    options: workerOptions,
    onEnded: (tasks) => {
      for (const t of tasks) void release(t);
    },
    maintain: upkeep,
  });

  const now = () => new Date(clock.now());

  function scenarioFor(id: string): Scenario {
    const key = id || DEFAULT_SCENARIO_ID;
    const s = scenarios.get(key);
    if (!s) throw new AppError("NOT_FOUND", `scenario ${quote(key)} not found; use one of ${[...scenarios.keys()].join(", ")} (or leave scenario_id empty for ${DEFAULT_SCENARIO_ID})`);
    return s;
  }

  /** A peer's failure as this service's error: the same code, saying which peer. */
  function peerError(err: unknown, doing: string): AppError {
    if (err instanceof AppError) return err;
    const code = codeOf(err);
    return new AppError((code === "UNKNOWN" ? "UNAVAILABLE" : code) as AppError["code"], `${doing}: ${messageOf(err)}`, { cause: err });
  }

  async function mustGet(id: string): Promise<TaskRow> {
    checkId(id, "task_id");
    const t = await store.getTask(db, id);
    if (!t) throw notFound("warming task", id);
    return t;
  }

  /**
   * Writes a PENDING task's plan in batches of PLAN_BATCH rows, each its own statement, letting
   * other work run between them: PGlite runs one statement at a time (a transaction holds it whole)
   * and blocks the event loop while it runs, so one statement or one transaction for a large plan
   * would stall every other call. The task stays PENDING, never claimed, until the plan is whole;
   * a start that dies halfway is settled by upkeep (the account never became WARMING: FAILED).
   */
  async function writePlan(taskId: string, first: PlannedAction, rest: Iterator<PlannedAction>): Promise<void> {
    let batch: PlannedAction[] = [first];
    for (let next = rest.next(); ; next = rest.next()) {
      if (!next.done) batch.push(next.value);
      if (batch.length === PLAN_BATCH || (next.done && batch.length > 0)) {
        await store.insertActions(db, taskId, batch);
        batch = [];
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (next.done) return;
    }
  }

  /** Moves the account of an ended task back from WARMING (only if it is still WARMING), then marks it released. */
  async function release(t: EndedTask): Promise<void> {
    if (releasing.has(t.id)) return;
    releasing.add(t.id);
    try {
      try {
        const acc = await peers.accounts.getAccount({ accountId: t.account_id });
        if (acc.status === AccountStatus.WARMING) {
          const open = await store.openTaskOf(db, t.account_id);
          // A newer task owns the WARMING status (cannot happen while this one is unreleased; cheap to check).
          if (!open) {
            await peers.accounts.updateStatus({ accountId: t.account_id, status: AccountStatus.ACTIVE, reason: `warming task ${t.id} ${statusName(t.status).replace("WARMING_STATUS_", "").toLowerCase()}`.slice(0, 1000) });
          }
        }
      } catch (err) {
        if (codeOf(err) !== "NOT_FOUND") throw err;
      }
      await store.markReleased(db, t.id);
    } catch (err) {
      log.warn({ task_id: t.id, account_id: t.account_id, err: messageOf(err) }, "could not move the account back from WARMING; retrying later");
    } finally {
      releasing.delete(t.id);
    }
  }

  /**
   * Deletes events past their retention, up to 20 batches a round (a backlog continues next
   * round). A round with nothing to delete reads the 5,000 lowest ids of the primary key: cheap.
   */
  async function pruneEvents(): Promise<void> {
    if (eventRetentionMs <= 0) return;
    let n = 0;
    let gone = EVENT_PRUNE_BATCH;
    for (let round = 0; round < 20 && gone === EVENT_PRUNE_BATCH; round++) {
      gone = await store.deleteOldEvents(db, eventRetentionMs, EVENT_PRUNE_BATCH);
      n += gone;
    }
    if (n > 0) log.info({ events: n, retention_days: eventRetentionMs / DAY_MS }, "deleted warming events past their retention");
  }

  /** Periodic upkeep: releases that failed, StartWarming calls interrupted before the account became WARMING, old events. */
  async function upkeep(): Promise<void> {
    await pruneEvents();
    for (const t of await store.claimUnreleased(db, releaseRetryMs, 100)) await release(t);
    for (const t of await store.claimStalePending(db, startRecoveryMs, 100)) {
      let status: AccountStatus | undefined;
      try {
        status = (await peers.accounts.getAccount({ accountId: t.account_id })).status;
      } catch (err) {
        if (codeOf(err) !== "NOT_FOUND") {
          log.warn({ task_id: t.id, err: messageOf(err) }, "cannot settle an interrupted start yet");
          continue;
        }
      }
      if (status === AccountStatus.WARMING) {
        await transition(t.id, "recovered an interrupted start", "system", (row) => (row.status === TaskStatus.PENDING ? runningUpdate(row) : undefined));
      } else {
        await transition(t.id, "StartWarming was interrupted before the account became WARMING", "system", (row) =>
          row.status === TaskStatus.PENDING ? { status: TaskStatus.FAILED, error: "StartWarming was interrupted before the account became WARMING; start it again", completed_at: now() } : undefined,
        );
      }
    }
  }

  /** The update that makes a PENDING or PAUSED task RUNNING (or COMPLETED when nothing is left). */
  function runningUpdate(t: TaskRow, inFlight = false): TaskUpdate {
    if (t.next_seq >= t.total_actions) {
      return { status: TaskStatus.COMPLETED, completed_at: now(), run_at: null, next_action_at: null, account_released: false, progress: 100, paused_at: null, current_day: t.total_days };
    }
    const at = t.next_action_at ?? now();
    return { status: TaskStatus.RUNNING, run_at: inFlight ? null : at, paused_at: null, current_day: dayOf(t.day1_at, t.total_days, clock.now()) };
  }

  /**
   * Changes a task's status in one transaction with its status_changed event: `change` sees the
   * locked row and answers the update, or undefined for no change. Releases the account when the
   * task ended, wakes the worker when it runs.
   */
  async function transition(id: string, reason: string, author: string, change: (t: TaskRow, tx: Queryable) => TaskUpdate | undefined | Promise<TaskUpdate | undefined>): Promise<TaskRow> {
    const row = await db.transaction(async (tx) => {
      const t = await store.lockTask(tx, id);
      if (!t) throw notFound("warming task", id);
      const set = await change(t, tx);
      if (!set) return t;
      const [u] = await store.updateTasks(tx, [{ id, set }]);
      const data: Record<string, string> = { from: statusName(t.status), to: statusName(u.status), reason, by: author, progress: String(u.progress) };
      if (u.error) data.error = u.error;
      await store.insertEvents(tx, [{ task_id: id, event_type: "status_changed", at: now(), data }]);
      return u;
    });
    if (!row.account_released) void release(row);
    if (row.status === TaskStatus.RUNNING) worker.kick();
    hub.poke();
    return row;
  }

  function toTask(t: TaskRow): WarmingTask {
    const open = OPEN_STATUSES.includes(t.status);
    return create(WarmingTaskSchema, {
      id: t.id,
      accountId: t.account_id,
      scenarioId: t.scenario_id,
      status: t.status,
      progress: t.progress,
      currentDay: open ? dayOf(t.day1_at, t.total_days, clock.now()) : t.current_day,
      totalDays: t.total_days,
      actionsCompleted: t.actions_completed,
      actionsFailed: t.actions_failed,
      nextActionAt: t.next_action_at ? timestampFromDate(t.next_action_at) : undefined,
      startedAt: timestampFromDate(t.started_at),
      completedAt: t.completed_at ? timestampFromDate(t.completed_at) : undefined,
      error: t.error,
    });
  }

  // One frozen message per event row: the hub hands every subscriber the same row, so they share
  // the message, and the transport encodes a frozen message once for all of them.
  const messages = new WeakMap<EventRow, WarmingEvent>();
  function toEvent(e: EventRow): WarmingEvent {
    let m = messages.get(e);
    if (!m) {
      m = Object.freeze(create(WarmingEventSchema, { taskId: e.task_id, eventType: e.event_type, timestamp: timestampFromDate(e.at), data: e.data, eventId: String(e.id) }));
      messages.set(e, m);
    }
    return m;
  }

  function toScenario(s: Scenario): WarmingScenario {
    return create(WarmingScenarioSchema, {
      id: s.id,
      name: s.name,
      description: s.description,
      totalDays: s.totalDays,
      source: s.source,
      isDefault: s.id === DEFAULT_SCENARIO_ID,
      days: s.days.map((d) =>
        create(WarmingScenarioDaySchema, {
          days: d.days,
          fromDay: d.from,
          toDay: d.to,
          startHour: d.window.startHour,
          endHour: d.window.endHour,
          actions: Object.fromEntries(Object.entries(d.actions).map(([k, v]) => [k, String(v)])),
        }),
      ),
    });
  }

  return {
    /** Starts the event hub (the process's one LISTEN) and the worker, or with runWorker false only the upkeep. */
    async start(): Promise<void> {
      if (started) return;
      started = true;
      await hub.start();
      hub.onEvent((e) => {
        if (e.event_type === "status_changed" && e.data.to === statusName(TaskStatus.RUNNING)) worker.kick();
      });
      if (runWorker) worker.start();
      else {
        // No worker here, but the upkeep (account releases, interrupted starts, retention) still runs.
        upkeepTimer = setInterval(() => {
          upkeeping ??= upkeep()
            .catch((err: unknown) => log.warn({ err: String(err) }, "warming upkeep failed; retrying next round"))
            .finally(() => (upkeeping = undefined));
        }, workerOptions.maintenanceMs);
        upkeepTimer.unref();
      }
    },

    /** Stops claiming, lets actions in flight finish for up to graceMs, records them, ends the streams. */
    async stop(graceMs = 5000): Promise<void> {
      if (!started) return;
      started = false;
      if (runWorker) await worker.stop(graceMs);
      clearInterval(upkeepTimer);
      await upkeeping;
      await hub.stop();
      // Account releases in flight get a moment; one that cannot finish is retried by the next process's upkeep.
      const until = Date.now() + Math.max(graceMs, 1000);
      while (releasing.size > 0 && Date.now() < until) await sleep(5);
    },

    /** StartWarming: ACTIVE account, no unfinished task, known scenario; the account becomes WARMING and the task RUNNING. */
    async startTask(req: { accountId: string; scenarioId: string; durationDays: number }, author: string): Promise<WarmingTask> {
      checkId(req.accountId, "account_id");
      const scenario = scenarioFor(req.scenarioId);
      if (!Number.isInteger(req.durationDays) || req.durationDays < 0 || req.durationDays > MAX_DAYS) {
        throw invalidArgument("duration_days", `must be 0 (the scenario's ${scenario.totalDays} days) or 1 to ${MAX_DAYS}, got ${req.durationDays}`);
      }
      const most = mostPlannedActions(scenario, req.durationDays);
      if (most > MAX_PLANNED_ACTIONS) {
        let fits = req.durationDays - 1;
        while (fits > 0 && mostPlannedActions(scenario, fits) > MAX_PLANNED_ACTIONS) fits--;
        throw invalidArgument(
          "duration_days",
          `${req.durationDays} would give scenario ${scenario.id} up to ${most} planned actions, more than the limit of ${MAX_PLANNED_ACTIONS} per task; ${fits > 0 ? `use at most ${fits} days` : "no duration fits"}`,
        );
      }
      const existing = await store.openTaskOf(db, req.accountId);
      if (existing) throw new AppError("ALREADY_EXISTS", `account ${req.accountId} already has an unfinished warming task ${existing.id} (${statusName(existing.status)}); stop it first or wait for it to end`);
      let account;
      try {
        account = await peers.accounts.getAccount({ accountId: req.accountId });
      } catch (err) {
        if (codeOf(err) === "NOT_FOUND") throw notFound("account", req.accountId);
        throw peerError(err, "reading the account from AccountService failed");
      }
      if (account.status !== AccountStatus.ACTIVE) {
        throw new AppError("FAILED_PRECONDITION", `account ${req.accountId} is ACCOUNT_STATUS_${AccountStatus[account.status]}; warming needs ACCOUNT_STATUS_ACTIVE`);
      }
      if (!isPlatform(account.platform)) throw new AppError("FAILED_PRECONDITION", `account ${req.accountId} is on ${quote(account.platform)}, not one of ${PLATFORMS.join(", ")}`);

      const id = newId();
      const startAt = now();
      const planOpts = { durationDays: req.durationDays, startAt, seed: id };
      const days = planDays(scenario, planOpts);
      const total = plannedCount(days);
      const actions = planActions(scenario, planOpts, days);
      const first = actions.next();
      const day1 = new Date(Math.floor(days[0].windowStart.getTime() / DAY_MS) * DAY_MS);
      try {
        const task = { id, account_id: req.accountId, platform: account.platform, scenario_id: scenario.id, duration_days: req.durationDays, total_days: days.length, day1_at: day1, started_at: startAt };
        await store.insertTask(db, task, total, first.done ? null : first.value.at);
      } catch (err) {
        if (sqlState(err) === PgError.uniqueViolation) throw new AppError("ALREADY_EXISTS", `account ${req.accountId} already has an unfinished warming task; stop it first or wait for it to end`);
        throw err;
      }
      try {
        if (!first.done) await writePlan(id, first.value, actions);
      } catch (err) {
        await store.deleteTask(db, id).catch((e) => log.warn({ task_id: id, err: String(e) }, "could not remove a task whose plan was not written; upkeep settles it"));
        throw err;
      }
      try {
        await peers.accounts.updateStatus({ accountId: req.accountId, status: AccountStatus.WARMING, reason: `warming task ${id} (scenario ${scenario.id})` });
      } catch (err) {
        await store.deleteTask(db, id).catch((e) => log.warn({ task_id: id, err: String(e) }, "could not remove a task whose start failed; upkeep settles it"));
        if (codeOf(err) === "FAILED_PRECONDITION") throw new AppError("FAILED_PRECONDITION", `account ${req.accountId} cannot become WARMING: ${messageOf(err)}`);
        throw peerError(err, "marking the account WARMING failed");
      }
      const row = await transition(id, `started (scenario ${scenario.id}, ${total} actions over ${days.length} days)`, author, (t) =>
        // Stopped while starting: the account became WARMING after the stop's release looked; release again.
        t.status === TaskStatus.PENDING ? runningUpdate(t) : t.account_released ? { account_released: false } : undefined,
      );
      return toTask(row);
    },

    /** PauseWarming: RUNNING → PAUSED at once (an action in flight may finish; none starts). Pausing a paused task is a no-op. */
    async pauseTask(taskId: string, author: string): Promise<WarmingTask> {
      checkId(taskId, "task_id");
      return toTask(
        await transition(taskId, "paused", author, (t) => {
          if (t.status === TaskStatus.PAUSED) return undefined;
          if (t.status !== TaskStatus.RUNNING) throw new AppError("FAILED_PRECONDITION", `task ${taskId} is ${statusName(t.status)}; only a WARMING_STATUS_RUNNING task can be paused`);
          return { status: TaskStatus.PAUSED, run_at: null, paused_at: now() };
        }),
      );
    },

    /** ResumeWarming: PAUSED → RUNNING; what fell due meanwhile runs now, in order. Resuming a running task is a no-op. */
    async resumeTask(taskId: string, author: string): Promise<WarmingTask> {
      checkId(taskId, "task_id");
      const row = await transition(taskId, "resumed", author, async (t, tx) => {
        if (t.status === TaskStatus.RUNNING) return undefined;
        if (t.status !== TaskStatus.PAUSED) throw new AppError("FAILED_PRECONDITION", `task ${taskId} is ${statusName(t.status)}; only a WARMING_STATUS_PAUSED task can be resumed`);
        // An action claimed before the pause and still in flight: its recording schedules the next.
        const inFlight = (await store.actionStatus(tx, t.id, t.next_seq)) === "running";
        return runningUpdate(t, inFlight);
      });
      return toTask(row);
    },

    /** StopWarming: final; STOPPED, the account back to ACTIVE. Stopping a stopped task is a no-op. */
    async stopTask(taskId: string, reason: string, author: string): Promise<WarmingTask> {
      checkId(taskId, "task_id");
      if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
      return toTask(
        await transition(taskId, reason || "stopped", author, (t) => {
          if (t.status === TaskStatus.STOPPED) return undefined;
          if (!OPEN_STATUSES.includes(t.status)) throw new AppError("FAILED_PRECONDITION", `task ${taskId} already ended (${statusName(t.status)}); only an unfinished task can be stopped`);
          return { status: TaskStatus.STOPPED, run_at: null, next_action_at: null, completed_at: now(), account_released: false, current_day: dayOf(t.day1_at, t.total_days, clock.now()) };
        }),
      );
    },

    /** GetWarmingStatus. */
    async getTask(taskId: string): Promise<WarmingTask> {
      return toTask(await mustGet(taskId));
    },

    /** GetStatistics over tasks (overlapping the range) and recorded actions (recorded in it). */
    async statistics(req: StatisticsRequest): Promise<WarmingStatistics> {
      if (req.accountId) checkId(req.accountId, "account_id");
      if (req.taskId) checkId(req.taskId, "task_id");
      if (req.platform && !isPlatform(req.platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(req.platform)}`);
      const from = req.from ? dateOf(req.from) : undefined;
      const to = req.to ? dateOf(req.to) : undefined;
      if (from && to && from > to) throw invalidArgument("from", `must not be after to (${from.toISOString()} > ${to.toISOString()})`);
      const rows = await store.statistics(db, { accountId: req.accountId, taskId: req.taskId, platform: req.platform, from, to });
      let completed = 0;
      let failed = 0;
      let durSum = 0;
      let durN = 0;
      for (const k of rows.byKind) {
        completed += k.done;
        failed += k.failed;
        durSum += k.duration_sum;
        durN += k.duration_n;
      }
      return create(WarmingStatisticsSchema, {
        tasksByStatus: Object.fromEntries(rows.byStatus.map((s) => [statusName(s.status), BigInt(s.n)])),
        actionsCompleted: BigInt(completed),
        actionsFailed: BigInt(failed),
        successRate: completed + failed > 0 ? completed / (completed + failed) : 0,
        meanActionDurationMs: durN > 0 ? durSum / durN : 0,
        byActionType: rows.byKind.map((k) =>
          create(ActionTypeStatisticsSchema, {
            actionType: actionTypeName(k.kind),
            completed: BigInt(k.done),
            failed: BigInt(k.failed),
            meanDurationMs: k.duration_n > 0 ? k.duration_sum / k.duration_n : 0,
          }),
        ),
        byDay: rows.byDay.map((d) => create(DayStatisticsSchema, { day: d.day, completed: BigInt(d.done), failed: BigInt(d.failed) })),
      });
    },

    /**
     * StreamEvents: stored events after after_event_id (empty: none, start live), then live ones,
     * in id order, each exactly once, until the signal aborts.
     */
    async *events(req: EventsRequest, signal?: AbortSignal): AsyncGenerator<WarmingEvent> {
      if (req.taskId) await mustGet(req.taskId);
      for (const t of req.eventTypes) {
        if (!(EVENT_TYPES as readonly string[]).includes(t)) throw invalidArgument("event_types", `holds ${quote(t)}; use ${EVENT_TYPES.join(", ")} (or none for all)`);
      }
      let afterId: number | undefined;
      if (req.afterEventId) {
        if (!/^\d{1,18}$/.test(req.afterEventId)) throw invalidArgument("after_event_id", `must be an event_id received earlier (digits), got ${quote(req.afterEventId)}`);
        afterId = Number(req.afterEventId);
      }
      for await (const e of hub.subscribe({ taskId: req.taskId || undefined, types: req.eventTypes, afterId }, signal)) yield toEvent(e);
    },

    /** ListScenarios. */
    listScenarios(): WarmingScenario[] {
      return [...scenarios.values()].map(toScenario);
    },

    /** GetScenario; empty id: the default. */
    getScenario(id: string): WarmingScenario {
      return toScenario(scenarioFor(id));
    },

    /** Resolves when the worker has nothing due, in flight or unrecorded (tests driving a fake clock). */
    async settled(timeoutMs = 20_000): Promise<void> {
      const until = Date.now() + timeoutMs;
      while (runWorker && started && !worker.isIdle()) {
        if (Date.now() > until) throw new Error(`warming did not settle within ${timeoutMs} ms (${JSON.stringify(worker.stats())})`);
        await sleep(2);
      }
    },

    /** The worker's counters (claims, claimed, recorded, dropped, in flight). */
    workerStats: () => worker.stats(),

    /** Runs the worker's upkeep now (tests): lapsed leases, releases, interrupted starts. */
    maintenance: () => worker.maintenance(),

    /** The event hub (tests, benchmarks). */
    hub,
  };
}

/** The warming domain's API. */
export type Warming = ReturnType<typeof createWarming>;

/**
 * A request Timestamp (range-checked by the transport: years 1-9999) as a Date, its nanos rounded
 * down to the millisecond: timestampDate rounds up, which turns 9999-12-31T23:59:59.999999999Z
 * into year 10000, a time PostgreSQL refuses.
 */
function dateOf(t: Timestamp): Date {
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000));
}

function definedOnly(o: WarmingOptions): Partial<WorkerOptions> {
  const out: Partial<WorkerOptions> = {};
  for (const k of Object.keys(WORKER_DEFAULTS) as (keyof WorkerOptions)[]) {
    const v = o[k];
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  }
  return out;
}
