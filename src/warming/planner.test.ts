import { test } from "node:test";
import assert from "node:assert/strict";
import { ACTION_KINDS } from "../platforms/driver.ts";
import { fakeClock } from "./clock.ts";
import { currentDay, dueBy, effectiveDays, mostPlannedActions, nextDue, planActions, planDays, planTask, plannedCount, progressOf, scenarioDayFor, scenarioEntryFor, seededRandom } from "./planner.ts";
import type { PlannedAction } from "./planner.ts";
import { builtinScenarios, countRange, parseScenario } from "./scenario.ts";
import type { Scenario } from "./scenario.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const scenarios = builtinScenarios();
const basic = scenarios.get("basic")!;
const START = new Date("2025-03-10T06:30:00Z"); // before every built-in window: day 1 is the start date

function countsByDay(plan: PlannedAction[]): Map<number, Map<string, number>> {
  const out = new Map<number, Map<string, number>>();
  for (const a of plan) {
    const m = out.get(a.day) ?? new Map<string, number>();
    m.set(a.kind, (m.get(a.kind) ?? 0) + 1);
    out.set(a.day, m);
  }
  return out;
}

test("plan counts match the scenario: fixed counts exactly, ranges within bounds, nothing unasked", () => {
  for (const s of scenarios.values()) {
    for (const seed of ["a", "b", "task-123", "ζ"]) {
      const plan = planTask(s, { startAt: START, seed });
      const byDay = countsByDay(plan);
      for (const d of planDays(s, { startAt: START, seed })) {
        const entry = scenarioEntryFor(s, d.scenarioDay);
        const got = byDay.get(d.day) ?? new Map();
        for (const kind of ACTION_KINDS) {
          const n = got.get(kind) ?? 0;
          assert.equal(n, d.counts[kind] ?? 0, `${s.id} day ${d.day} ${kind}: plan matches the drawn count`);
          const c = entry.actions[kind];
          if (c === undefined) {
            assert.equal(n, 0, `${s.id} day ${d.day}: no ${kind} unless asked`);
            continue;
          }
          const { min, max } = countRange(c)!;
          assert.ok(n >= min && n <= max, `${s.id} day ${d.day} ${kind}: ${n} within ${c}`);
          if (typeof c === "number") assert.equal(n, c);
        }
      }
    }
  }
  // intensive day 1 is fixed: { view_profile: 5, view_stories: 3 }.
  const day1 = countsByDay(planTask(scenarios.get("intensive")!, { startAt: START, seed: "x" })).get(1)!;
  assert.deepEqual(Object.fromEntries(day1), { view_profile: 5, view_stories: 3 });
});

test("ranges are drawn over their whole span across seeds", () => {
  // basic days 10-14: comment "0-2"; over many seeds both ends occur.
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(planDays(basic, { startAt: START, seed: `s${i}` })[9].counts.comment!);
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
});

test("every action is inside its day's window, on its own date, in time order, seq = index, keys unique", () => {
  for (const s of scenarios.values()) {
    const seed = `order-${s.id}`;
    const plan = planTask(s, { startAt: START, seed });
    const startDate = Math.floor(START.getTime() / DAY) * DAY;
    const keys = new Set<string>();
    plan.forEach((a, i) => {
      assert.equal(a.seq, i);
      assert.equal(a.key, `${seed}:${i}`);
      keys.add(a.key);
      const w = scenarioEntryFor(s, a.day).window;
      const date = startDate + (a.day - 1) * DAY;
      const t = a.at.getTime();
      assert.ok(t >= date + w.startHour * HOUR && t < date + w.endHour * HOUR, `${s.id} #${i} ${a.at.toISOString()} in day ${a.day}'s window ${w.startHour}-${w.endHour}`);
      assert.ok(t >= START.getTime());
      if (i > 0) {
        assert.ok(t >= plan[i - 1].at.getTime(), `${s.id} #${i} not before #${i - 1}`);
        assert.ok(a.day >= plan[i - 1].day);
      }
    });
    assert.equal(keys.size, plan.length);
    assert.deepEqual(new Set(plan.map((a) => a.day)), new Set(Array.from({ length: s.totalDays }, (_, i) => i + 1)));
  }
});

test("actions spread over the whole window (one per equal slot), not bunched", () => {
  const s = parseScenario({ id: "flat", totalDays: 1, days: [{ days: "1", window: { startHour: 8, endHour: 20 }, actions: { like_post: 12 } }] }, "t");
  const plan = planTask(s, { startAt: START, seed: "spread" });
  const date = Math.floor(START.getTime() / DAY) * DAY;
  assert.equal(plan.length, 12);
  plan.forEach((a, i) => {
    const hour = (a.at.getTime() - date) / HOUR;
    assert.ok(hour >= 8 + i && hour < 9 + i, `action ${i} in hour slot ${8 + i}, got ${hour}`);
  });
});

test("deterministic for a seed, different for another seed", () => {
  const a1 = planTask(basic, { startAt: START, seed: "task-1" });
  const a2 = planTask(basic, { startAt: new Date(START), seed: "task-1" });
  assert.deepEqual(a2, a1);
  const b = planTask(basic, { startAt: START, seed: "task-2" });
  assert.notDeepEqual(b.map((x) => x.at.getTime()), a1.map((x) => x.at.getTime()));
  assert.notDeepEqual(b.map((x) => x.kind), a1.map((x) => x.kind));
  assert.ok(b.every((x) => x.key.startsWith("task-2:")));
  // The PRNG itself: repeatable, in [0, 1), seed-dependent.
  const r1 = seededRandom("k");
  const r2 = seededRandom("k");
  const xs = Array.from({ length: 1000 }, () => r1());
  assert.deepEqual(Array.from({ length: 1000 }, () => r2()), xs);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notEqual(seededRandom("l")(), seededRandom("k")());
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(mean > 0.45 && mean < 0.55, `mean ${mean}`);
});

test("duration_days: task day d runs scenario day ceil(d × total / N); clamped to 1..365; 0 keeps the scenario", () => {
  const map = (total: number, n: number) => Array.from({ length: n }, (_, i) => scenarioDayFor(i + 1, total, n));
  assert.deepEqual(map(14, 14), Array.from({ length: 14 }, (_, i) => i + 1));
  assert.deepEqual(map(14, 7), [2, 4, 6, 8, 10, 12, 14]);
  assert.deepEqual(map(14, 28), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14]);
  assert.deepEqual(map(14, 5), [3, 6, 9, 12, 14]);
  assert.deepEqual(map(7, 10), [1, 2, 3, 3, 4, 5, 5, 6, 7, 7]);
  assert.deepEqual(map(14, 1), [14]);

  assert.equal(effectiveDays(14, undefined), 14);
  assert.equal(effectiveDays(14, 0), 14);
  assert.equal(effectiveDays(14, Number.NaN), 14);
  assert.equal(effectiveDays(14, 30), 30);
  assert.equal(effectiveDays(14, 2.6), 3);
  assert.equal(effectiveDays(14, 1000), 365);
  assert.equal(effectiveDays(14, -5), 1);

  const days = planDays(basic, { startAt: START, seed: "d", durationDays: 7 });
  assert.deepEqual(days.map((d) => d.scenarioDay), [2, 4, 6, 8, 10, 12, 14]);
  // The mapped day's window and action kinds are used: task day 5 runs scenario day 10 (basic "10-14").
  const plan = planTask(basic, { startAt: START, seed: "d", durationDays: 7 });
  const day5 = plan.filter((a) => a.day === 5);
  const w = scenarioEntryFor(basic, 10).window;
  assert.ok(day5.every((a) => a.at.getUTCHours() >= w.startHour && a.at.getUTCHours() < w.endHour));
  assert.ok(day5.some((a) => a.kind === "view_profile"));
  assert.equal(Math.max(...plan.map((a) => a.day)), 7);
  assert.equal(planDays(basic, { startAt: START, seed: "d", durationDays: 1000 }).length, 365);
  assert.equal(planDays(basic, { startAt: START, seed: "d", durationDays: -1 }).length, 1);
});

test("mostPlannedActions bounds every plan (ranges at their upper end) and follows duration_days; plannedCount is the plan's length", () => {
  const fixed = parseScenario({ id: "f", totalDays: 3, days: [{ days: "1-2", window: { startHour: 0, endHour: 24 }, actions: { like_post: 4 } }, { days: "3", window: { startHour: 0, endHour: 24 }, actions: { like_post: 1, repost: 2 } }] }, "t");
  assert.equal(mostPlannedActions(fixed), 11);
  assert.equal(planTask(fixed, { startAt: START, seed: "f" }).length, 11);
  // 7 task days run scenario days 1,1,2,2,3,3,3 (ceil(d × 3 / 7)): 4+4+4+4+3+3+3.
  assert.equal(mostPlannedActions(fixed, 7), 25);
  assert.equal(planTask(fixed, { startAt: START, seed: "f", durationDays: 7 }).length, 25);
  assert.equal(mostPlannedActions(fixed, 1000), mostPlannedActions(fixed, 365), "clamped like the plan");
  for (const s of scenarios.values()) {
    for (const durationDays of [0, 3, 30, 365]) {
      const most = mostPlannedActions(s, durationDays);
      for (const seed of ["a", "b", "c"]) {
        const opts = { startAt: START, seed, durationDays };
        const days = planDays(s, opts);
        const n = planTask(s, opts).length;
        assert.ok(n <= most, `${s.id} over ${durationDays} days: ${n} > ${most}`);
        assert.equal(plannedCount(days), n);
        assert.deepEqual([...planActions(s, opts, days)], planTask(s, opts));
      }
    }
  }
});

test("day 1 is the start date while at least half its window is ahead, then starts at startAt; else the next date", () => {
  // basic day 1 window: 10:00-20:00 UTC, midpoint 15:00.
  const at = (iso: string) => planDays(basic, { startAt: new Date(iso), seed: "w" })[0];
  assert.deepEqual([at("2025-03-10T03:00:00Z").windowStart, at("2025-03-10T03:00:00Z").windowEnd], [new Date("2025-03-10T10:00:00Z"), new Date("2025-03-10T20:00:00Z")]);
  assert.deepEqual(at("2025-03-10T15:00:00Z").windowStart, new Date("2025-03-10T15:00:00Z"));
  assert.deepEqual([at("2025-03-10T15:00:01Z").windowStart, at("2025-03-10T15:00:01Z").windowEnd], [new Date("2025-03-11T10:00:00Z"), new Date("2025-03-11T20:00:00Z")]);
  assert.deepEqual(at("2025-03-10T23:59:00Z").windowStart, new Date("2025-03-11T10:00:00Z"));

  const late = new Date("2025-03-10T13:00:00Z");
  const plan = planTask(basic, { startAt: late, seed: "w" });
  assert.ok(plan.filter((a) => a.day === 1).every((a) => a.at >= late && a.at.getTime() < Date.parse("2025-03-10T20:00:00Z")));
  assert.ok(plan.filter((a) => a.day === 2).every((a) => a.at.toISOString().startsWith("2025-03-11")));
});

test("progressOf, currentDay, nextDue and dueBy", () => {
  assert.equal(progressOf(0, 10), 0);
  assert.equal(progressOf(1, 3), 33);
  assert.equal(progressOf(199, 200), 99);
  assert.equal(progressOf(200, 200), 100);
  assert.equal(progressOf(250, 200), 100);
  assert.equal(progressOf(0, 0), 100);

  const days = planDays(basic, { startAt: new Date("2025-03-10T16:00:00Z"), seed: "c" }); // day 1 = 11 March
  assert.equal(currentDay(days, Date.parse("2025-03-10T16:00:00Z")), 1);
  assert.equal(currentDay(days, Date.parse("2025-03-11T00:00:00Z")), 1);
  assert.equal(currentDay(days, new Date("2025-03-11T23:59:59Z")), 1);
  assert.equal(currentDay(days, Date.parse("2025-03-12T00:00:00Z")), 2);
  assert.equal(currentDay(days, Date.parse("2025-03-24T12:00:00Z")), 14);
  assert.equal(currentDay(days, Date.parse("2025-05-01T00:00:00Z")), 14);
  assert.equal(currentDay([], 0), 0);

  const plan = planTask(basic, { startAt: START, seed: "n" });
  assert.equal(nextDue(plan, new Set()), plan[0]);
  assert.equal(nextDue(plan, new Set([0, 1, 3])), plan[2]);
  assert.equal(nextDue(plan, new Set(plan.map((a) => a.seq))), undefined);
  const now = plan[5].at.getTime();
  assert.deepEqual(dueBy(plan, new Set([1, 4]), now).map((a) => a.seq), [0, 2, 3, 5]);
  assert.deepEqual(dueBy(plan, new Set(), START), []);
});

test("a scheduler on a fake clock records every planned action exactly once, across a restart", async () => {
  const s = parseScenario(
    {
      id: "tiny",
      totalDays: 3,
      days: [
        { days: "1", window: { startHour: 9, endHour: 12 }, actions: { view_profile: "2-3", like_post: 1 } },
        { days: "2", window: { startHour: 0, endHour: 24 }, actions: {} },
        { days: "3", window: { startHour: 20, endHour: 21 }, actions: { subscribe: 2 } },
      ],
    },
    "test",
  );
  const clock = fakeClock(START);
  const opts = { startAt: START, seed: "task-42" };
  const recorded: { key: string; at: number }[] = []; // stands in for the table with a unique key
  const done = new Set<number>();

  // One scheduler run: re-plan (pure), then run what is due, sleeping on the clock in between.
  async function run(signal: AbortSignal): Promise<void> {
    const plan = planTask(s, opts);
    for (let a = nextDue(plan, done); a; a = nextDue(plan, done)) {
      const wait = a.at.getTime() - clock.now();
      if (wait > 0) await clock.sleep(wait, signal);
      assert.ok(!recorded.some((r) => r.key === a!.key), `${a.key} recorded once`);
      recorded.push({ key: a.key, at: clock.now() });
      done.add(a.seq);
    }
  }

  const plan = planTask(s, opts);
  assert.equal(plan.filter((a) => a.day === 2).length, 0, "a rest day plans nothing");
  const first = new AbortController();
  const firstRun = run(first.signal).catch((err) => err);
  await clock.advance(plan[1].at.getTime() - clock.now()); // the first two actions come due
  assert.equal(recorded.length, 2);
  first.abort(); // the process stops mid-sleep
  assert.equal(((await firstRun) as Error).name, "AbortError");

  const second = run(new AbortController().signal); // restart: same plan, done set kept
  await clock.advance(3 * DAY);
  await second;
  assert.deepEqual(recorded.map((r) => r.key), plan.map((a) => a.key));
  recorded.forEach((r, i) => assert.equal(r.at, plan[i].at.getTime(), "each ran at its planned time"));
  assert.equal(progressOf(done.size, plan.length), 100);
});
