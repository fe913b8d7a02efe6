import { createHash } from "node:crypto";
import { ACTION_KINDS } from "../platforms/driver.ts";
import type { ActionKind } from "../platforms/driver.ts";
import { countRange, MAX_DAYS, mostPerDay } from "./scenario.ts";
import type { Scenario, ScenarioDay } from "./scenario.ts";

/**
 * Turns a scenario into the exact list of actions a task will run: pure and deterministic in
 * (scenario, durationDays, startAt, seed), so a scheduler can re-plan after a restart and get the
 * same list, and record each planned action once by its key.
 *
 * Calendar: task day d is a UTC date; its actions fall in that day's active window. Day 1 is the
 * start date when at least half of day 1's window is still ahead of startAt (its actions then
 * spread over what remains of the window, from startAt), otherwise the next date (the full window).
 *
 * duration_days: 0/absent keeps the scenario's totalDays; otherwise it is rounded and clamped to
 * 1..365, and task day d (of N) runs scenario day ceil(d × totalDays / N): a longer task repeats
 * scenario days, a shorter one skips some, and the last task day always runs the last scenario day.
 *
 * Times: a day's n actions are shuffled, then action i lands at a seeded random point of the i-th of n
 * equal slots of the window, so they spread over the whole window, never collide in order, and
 * differ per seed. Ranges ("2-5") are drawn uniformly per day from the same seeded stream.
 */

/** One action the task will run: `seq` is its index in the plan (0-based, in time order), `key` = `${seed}:${seq}`. */
export type PlannedAction = { seq: number; day: number; kind: ActionKind; at: Date; key: string };

/** What a plan depends on besides the scenario. */
export type PlanOptions = {
  /** StartWarming's duration_days; 0 or absent: the scenario's totalDays. */
  durationDays?: number;
  /** When the task started (scenario time). */
  startAt: Date;
  /** Makes the plan's counts and times; use the task id. */
  seed: string;
};

/** One task day: which scenario day it runs, its window (day 1's may start at startAt) and the drawn counts. */
export type PlannedDay = {
  day: number;
  scenarioDay: number;
  windowStart: Date;
  windowEnd: Date;
  counts: Partial<Record<ActionKind, number>>;
};

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** The task's length in days: durationDays rounded and clamped to 1..365, or the scenario's totalDays when 0/absent/NaN. */
export function effectiveDays(totalDays: number, durationDays?: number): number {
  if (durationDays === undefined || durationDays === 0 || !Number.isFinite(durationDays)) return totalDays;
  return Math.min(MAX_DAYS, Math.max(1, Math.round(durationDays)));
}

/** The scenario day task day `day` (1..taskDays) runs: ceil(day × totalDays / taskDays). */
export function scenarioDayFor(day: number, totalDays: number, taskDays: number): number {
  return Math.min(totalDays, Math.max(1, Math.ceil((day * totalDays) / taskDays)));
}

/** The scenario entry covering scenario day `day`. */
export function scenarioEntryFor(scenario: Scenario, day: number): ScenarioDay {
  const entry = scenario.days.find((d) => d.from <= day && day <= d.to);
  if (!entry) throw new RangeError(`scenario ${scenario.id} has no entry for day ${day}`);
  return entry;
}

/** The task's days in order, with windows and drawn counts; deterministic in its arguments. */
export function planDays(scenario: Scenario, opts: PlanOptions): PlannedDay[] {
  const taskDays = effectiveDays(scenario.totalDays, opts.durationDays);
  const start = opts.startAt.getTime();
  const startDate = Math.floor(start / DAY_MS) * DAY_MS;
  const first = scenarioEntryFor(scenario, scenarioDayFor(1, scenario.totalDays, taskDays)).window;
  const firstStart = startDate + first.startHour * HOUR_MS;
  const firstEnd = startDate + first.endHour * HOUR_MS;
  const day1 = start <= (firstStart + firstEnd) / 2 ? startDate : startDate + DAY_MS;

  const out: PlannedDay[] = [];
  for (let day = 1; day <= taskDays; day++) {
    const scenarioDay = scenarioDayFor(day, scenario.totalDays, taskDays);
    const entry = scenarioEntryFor(scenario, scenarioDay);
    const date = day1 + (day - 1) * DAY_MS;
    const windowStart = Math.max(date + Math.round(entry.window.startHour * HOUR_MS), start);
    const windowEnd = date + Math.round(entry.window.endHour * HOUR_MS);
    const rand = seededRandom(`${opts.seed}:day:${day}:counts`);
    const counts: Partial<Record<ActionKind, number>> = {};
    for (const kind of ACTION_KINDS) {
      const c = entry.actions[kind];
      if (c === undefined) continue;
      const r = countRange(c)!;
      counts[kind] = r.min + Math.floor(rand() * (r.max - r.min + 1));
    }
    out.push({ day, scenarioDay, windowStart: new Date(windowStart), windowEnd: new Date(windowEnd), counts });
  }
  return out;
}

/** The task's actions in time order; the same scenario, options and seed give the same plan. */
export function planTask(scenario: Scenario, opts: PlanOptions): PlannedAction[] {
  return [...planActions(scenario, opts)];
}

/**
 * planTask one action at a time (for `days`, planDays' answer, when the caller has it): a large plan
 * is written in batches without ever being held whole.
 */
export function* planActions(scenario: Scenario, opts: PlanOptions, days: readonly PlannedDay[] = planDays(scenario, opts)): Generator<PlannedAction> {
  let seq = 0;
  for (const d of days) {
    const kinds: ActionKind[] = [];
    for (const kind of ACTION_KINDS) for (let i = 0; i < (d.counts[kind] ?? 0); i++) kinds.push(kind);
    const rand = seededRandom(`${opts.seed}:day:${d.day}:times`);
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
    }
    const start = d.windowStart.getTime();
    const slot = (d.windowEnd.getTime() - start) / Math.max(1, kinds.length);
    for (let i = 0; i < kinds.length; i++) {
      yield { seq, day: d.day, kind: kinds[i], at: new Date(start + Math.floor((i + rand()) * slot)), key: `${opts.seed}:${seq}` };
      seq++;
    }
  }
}

/** How many actions a plan holds: the sum of `days`' drawn counts. */
export function plannedCount(days: readonly PlannedDay[]): number {
  let n = 0;
  for (const d of days) for (const c of Object.values(d.counts)) n += c;
  return n;
}

/**
 * The most actions a plan of this scenario over `durationDays` (0: its totalDays) may hold, every
 * range at its upper end: what MAX_PLANNED_ACTIONS bounds. duration_days beyond totalDays repeats
 * scenario days, so it can push a scenario that loads over the limit.
 */
export function mostPlannedActions(scenario: Scenario, durationDays?: number): number {
  const perDay: number[] = [];
  for (const entry of scenario.days) for (let day = entry.from; day <= entry.to; day++) perDay[day] = mostPerDay(entry);
  const taskDays = effectiveDays(scenario.totalDays, durationDays);
  let n = 0;
  for (let day = 1; day <= taskDays; day++) n += perDay[scenarioDayFor(day, scenario.totalDays, taskDays)] ?? 0;
  return n;
}

/** Percent done, 0..100, rounded down (100 only when done ≥ total; a plan with nothing to do is 100). */
export function progressOf(done: number, total: number): number {
  if (total <= 0) return 100;
  return Math.min(100, Math.max(0, Math.floor((done * 100) / total)));
}

/** The task day (1..days.length) whose UTC date `now` falls on: 1 before day 1, the last day after it. */
export function currentDay(days: readonly PlannedDay[], now: number | Date): number {
  if (days.length === 0) return 0;
  const today = Math.floor(Number(now) / DAY_MS);
  const day1 = Math.floor(days[0].windowStart.getTime() / DAY_MS);
  return Math.min(days.length, Math.max(1, today - day1 + 1));
}

/** The task day `now` falls on for a stored task (1..totalDays; 1 before day 1): currentDay from its day 1's date. */
export function dayOf(day1At: Date, totalDays: number, now: number): number {
  return Math.min(totalDays, Math.max(1, Math.floor((now - day1At.getTime()) / DAY_MS) + 1));
}

/** The first planned action not in `doneSeqs` (the next one to run, possibly overdue), or undefined when all are done. */
export function nextDue(plan: readonly PlannedAction[], doneSeqs: ReadonlySet<number>): PlannedAction | undefined {
  return plan.find((a) => !doneSeqs.has(a.seq));
}

/** Every planned action not in `doneSeqs` whose time is ≤ now, in order (what a scheduler owes after a pause or restart). */
export function dueBy(plan: readonly PlannedAction[], doneSeqs: ReadonlySet<number>, now: number | Date): PlannedAction[] {
  const t = Number(now);
  const out: PlannedAction[] = [];
  for (const a of plan) {
    if (a.at.getTime() > t) break;
    if (!doneSeqs.has(a.seq)) out.push(a);
  }
  return out;
}

/** A small deterministic PRNG (sfc32 seeded by SHA-256 of `seed`): returns floats in [0, 1). */
export function seededRandom(seed: string): () => number {
  const h = createHash("sha256").update(seed).digest();
  let a = h.readUInt32LE(0);
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  const next = () => {
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}
