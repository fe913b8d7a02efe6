import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
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
import { dayOf } from "./planner.ts";
import { DEFAULT_SCENARIO_ID } from "./scenario.ts";
import type { Scenario } from "./scenario.ts";
import { statusName } from "./task-status.ts";
import type { EventRow, StatsRows, TaskRow } from "./warming-store.ts";
import { OPEN_STATUSES } from "./warming-store.ts";
import { actionTypeName } from "./worker.ts";

/** Rows as the API's messages: task, event, scenario, statistics. Pure. */

/** A task row as WarmingTask; an open task's current day is `now`'s; the login when the caller read it. */
export function toTask(t: TaskRow, now: number, accountLogin = ""): WarmingTask {
  const open = OPEN_STATUSES.includes(t.status);
  return create(WarmingTaskSchema, {
    id: t.id,
    accountId: t.account_id,
    scenarioId: t.scenario_id,
    status: t.status,
    progress: t.progress,
    currentDay: open ? dayOf(t.day1_at, t.total_days, now) : t.current_day,
    totalDays: t.total_days,
    actionsCompleted: t.actions_completed,
    actionsFailed: t.actions_failed,
    nextActionAt: t.next_action_at ? timestampFromDate(t.next_action_at) : undefined,
    startedAt: timestampFromDate(t.started_at),
    completedAt: t.completed_at ? timestampFromDate(t.completed_at) : undefined,
    error: t.error,
    platform: t.platform,
    accountLogin,
  });
}

/**
 * An event row as one frozen WarmingEvent, made once per row: the hub hands every subscriber the
 * same row, so they share the message, and the transport encodes a frozen message once for all.
 */
export function toEvent(cache: WeakMap<EventRow, WarmingEvent>, e: EventRow): WarmingEvent {
  let m = cache.get(e);
  if (!m) {
    m = Object.freeze(create(WarmingEventSchema, { taskId: e.task_id, eventType: e.event_type, timestamp: timestampFromDate(e.at), data: e.data, eventId: String(e.id) }));
    cache.set(e, m);
  }
  return m;
}

/** A scenario as WarmingScenario. */
export function toScenario(s: Scenario): WarmingScenario {
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

/** The statistics query's rows as WarmingStatistics: totals, success rate and mean durations. */
export function toStatistics(rows: StatsRows): WarmingStatistics {
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
}

/**
 * A request Timestamp (range-checked by the transport: years 1-9999) as a Date, its nanos rounded
 * down to the millisecond: timestampDate rounds up, which turns 9999-12-31T23:59:59.999999999Z
 * into year 10000, a time PostgreSQL refuses.
 */
export function dateOf(t: Timestamp): Date {
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000));
}
