import { setTimeout as sleep } from "node:timers/promises";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { WarmingEvent, WarmingScenario, WarmingStatistics } from "../gen/conveer/v1/warming_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { invalidArgument, quote } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { createActionRate } from "./action-rate.ts";
import { createEventHub } from "./events.ts";
import { dateOf, toEvent, toScenario, toStatistics } from "./messages.ts";
import { createUpkeep, logTaskEnded, release, releasesSettled } from "./release.ts";
import { getTask, listTasks } from "./task-list.ts";
import type { ListTasksRequest } from "./task-list.ts";
import { statusName } from "./task-status.ts";
import { pauseTask, readTask, resumeTask, scenarioFor, startTask, stopTask } from "./tasks.ts";
import { resolveOptions } from "./warming-context.ts";
import type { WarmingContext, WarmingDeps } from "./warming-context.ts";
import * as store from "./warming-store.ts";
import { EVENT_TYPES, TaskStatus } from "./warming-store.ts";
import { createWorker } from "./worker.ts";

export type { WarmingDeps, WarmingOptions } from "./warming-context.ts";

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

/** StreamEvents' request, as the domain takes it. */
export type EventsRequest = { taskId: string; eventTypes: readonly string[]; afterEventId: string };

/** GetStatistics' request, as the domain takes it. */
export type StatisticsRequest = { accountId: string; taskId: string; platform: string; from?: Timestamp; to?: Timestamp };

/** Creates the warming domain; start() runs the event hub and the worker, stop() drains them. */
export function createWarming(deps: WarmingDeps) {
  const { db, peers, clock, log } = deps;
  const opts = resolveOptions(deps.options);
  const worker = createWorker({ db, peers, clock, log, options: opts.worker, metrics: deps.metrics,
    onEnded: (tasks) => {
      for (const t of tasks) logTaskEnded(ctx, t);
      void release(ctx, tasks);
    },
  });
  const ctx: WarmingContext = { ...deps, opts, hub: createEventHub({ db, log, options: opts.events }), worker, releasing: new Set(), eventMessages: new WeakMap() };
  const upkeep = createUpkeep(ctx);
  const rate = createActionRate(db);
  // Once each: the worker, the upkeep and the hub cannot start again once stopped.
  let phase: "new" | "started" | "stopped" = "new";
  ctx.hub.onEvent((e) => {
    if (e.event_type === "status_changed" && e.data.to === statusName(TaskStatus.RUNNING)) worker.kick();
  });
  /** Stops claiming, lets actions in flight finish for up to graceMs, records them, ends the streams. */
  const halt = async (graceMs: number) => {
    const upkeepStopped = upkeep.stop();
    if (opts.runWorker) await worker.stop(graceMs);
    await upkeepStopped;
    await ctx.hub.stop();
  };

  return {
    /**
     * Starts the worker (unless runWorker is false), the upkeep and the event hub (the process's one
     * LISTEN); answers when the hub is ready. Once only: a start that failed has stopped its parts
     * again, and neither it nor a stopped one starts again.
     */
    async start(): Promise<void> {
      if (phase !== "new") return;
      phase = "started";
      // The worker does not wait for the hub: the hub's start waits for every transaction open in
      // the database cluster when it looked (up to maxGapWaitMs, 30 s), and actions falling due
      // meanwhile would wait with it. The worker's events are ordered for subscribers as any other
      // replica's are, whenever they are written.
      if (opts.runWorker) worker.start();
      upkeep.start();
      await ctx.hub.start().catch(async (err: unknown) => {
        phase = "stopped";
        await halt(0);
        throw err;
      });
    },

    /** Stops claiming, lets actions in flight finish for up to graceMs, records them, ends the streams. */
    async stop(graceMs = 5000): Promise<void> {
      if (phase !== "started") return;
      phase = "stopped";
      await halt(graceMs);
      await releasesSettled(ctx, graceMs);
    },

    startTask: startTask.bind(null, ctx),
    pauseTask: pauseTask.bind(null, ctx),
    resumeTask: resumeTask.bind(null, ctx),
    stopTask: stopTask.bind(null, ctx),

    /** GetWarmingStatus, with the account's login. */
    getTask: (taskId: string) => getTask(ctx, taskId),

    /** ListWarmingTasks: a keyset page, newest first, and the filter's total. */
    listTasks: (req: ListTasksRequest) => listTasks(ctx, req),

    /** GetStatistics over tasks (overlapping the range) and recorded actions (recorded in it). */
    statistics: (req: StatisticsRequest) => statistics(ctx, req),

    /** GetActionRate: actions completed and failed per real-time minute of the last hour (see action-rate.ts). */
    actionRate: () => rate.read(),

    /** StreamEvents (see streamEvents). */
    events: (req: EventsRequest, signal?: AbortSignal) => streamEvents(ctx, req, signal),

    /** ListScenarios. */
    listScenarios: (): WarmingScenario[] => [...ctx.scenarios.values()].map(toScenario),

    /** GetScenario; empty id: the default. */
    getScenario: (id: string): WarmingScenario => toScenario(scenarioFor(ctx, id)),

    /** Resolves when the worker has nothing due, in flight or unrecorded (tests driving a fake clock). */
    async settled(timeoutMs = 20_000): Promise<void> {
      const until = Date.now() + timeoutMs;
      while (opts.runWorker && phase === "started" && !worker.isIdle()) {
        if (Date.now() > until) throw new Error(`warming did not settle within ${timeoutMs} ms (${JSON.stringify(worker.stats())})`);
        await sleep(2);
      }
    },

    /** The worker's counters (claims, claimed, recorded, dropped, in flight). */
    workerStats: () => worker.stats(),

    /**
     * Runs an upkeep round that starts after this call (tests): lapsed leases, releases,
     * interrupted starts, old events. A round already in progress (the timer's) began before the
     * caller's changes, so it is waited for and a fresh one runs.
     */
    maintenance: () => upkeep.round(true).then(() => upkeep.round(true)),

    /** The event hub (tests, benchmarks). */
    hub: ctx.hub,
  };
}

/** The warming domain's API. */
export type Warming = ReturnType<typeof createWarming>;

/** GetStatistics: checks the filter, reads the rows, sums them up. */
async function statistics(ctx: WarmingContext, req: StatisticsRequest): Promise<WarmingStatistics> {
  if (req.accountId) checkId(req.accountId, "account_id");
  if (req.taskId) checkId(req.taskId, "task_id");
  if (req.platform && !isPlatform(req.platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(req.platform)}`);
  const from = req.from ? dateOf(req.from) : undefined;
  const to = req.to ? dateOf(req.to) : undefined;
  if (from && to && from > to) throw invalidArgument("from", `must not be after to (${from.toISOString()} > ${to.toISOString()})`);
  return toStatistics(await store.statistics(ctx.db, { accountId: req.accountId, taskId: req.taskId, platform: req.platform, from, to }));
}

/**
 * StreamEvents: stored events after after_event_id (empty: none, start live), then live ones,
 * in id order, each exactly once, until the signal aborts.
 */
async function* streamEvents(ctx: WarmingContext, req: EventsRequest, signal?: AbortSignal): AsyncGenerator<WarmingEvent> {
  if (req.taskId) await readTask(ctx, req.taskId);
  for (const t of req.eventTypes) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) throw invalidArgument("event_types", `holds ${quote(t)}; use ${EVENT_TYPES.join(", ")} (or none for all)`);
  }
  let afterId: number | undefined;
  if (req.afterEventId) {
    if (!/^\d{1,18}$/.test(req.afterEventId)) throw invalidArgument("after_event_id", `must be an event_id received earlier (digits), got ${quote(req.afterEventId)}`);
    afterId = Number(req.afterEventId);
  }
  for await (const e of ctx.hub.subscribe({ taskId: req.taskId || undefined, types: req.eventTypes, afterId }, signal)) yield toEvent(ctx.eventMessages, e);
}
