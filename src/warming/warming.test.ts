import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { AccountStatus, CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import type { WarmingEvent, WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import { createAccounts } from "../accounts/accounts.ts";
import type { Accounts } from "../accounts/accounts.ts";
import { AppError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openPostgres } from "../store/postgres.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { fakeClock, systemClock } from "./clock.ts";
import type { Clock, FakeClock } from "./clock.ts";
import { fakePlatform } from "./fake-peers.ts";
import { localAccountsPeer } from "./peers.ts";
import { planTask } from "./planner.ts";
import type { PlannedAction } from "./planner.ts";
import { MAX_PLANNED_ACTIONS, builtinScenarios, parseScenario } from "./scenario.ts";
import { ACTION_KINDS } from "../platforms/driver.ts";
import type { Scenario } from "./scenario.ts";
import { createWarming } from "./warming.ts";
import type { Warming, WarmingOptions } from "./warming.ts";
import { rejectsWithAppError as rejectsWith } from "../../test/support/assert.ts";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const HOUR = 3_600_000;
const DAY = 86_400_000;
const START = new Date("2025-03-10T06:00:00Z");

/** Two days, all-day windows: day 1 is the start date (06:00 is before noon), ~10 actions. */
const tiny = parseScenario(
  {
    id: "tiny",
    totalDays: 2,
    days: [
      { days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 3, like_post: 2 } },
      { days: "2", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2, subscribe: "1-2", view_stories: 1 } },
    ],
  },
  "test",
);
/** One day, 5 actions in an all-day window. */
const five = parseScenario({ id: "five", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 3, like_post: 2 } }] }, "test");
/** The largest plan a task may have: 250 days × 200 fixed actions = MAX_PLANNED_ACTIONS. */
const biggest = parseScenario(
  { id: "biggest", totalDays: 250, days: [{ days: "1-250", window: { startHour: 0, endHour: 24 }, actions: Object.fromEntries(ACTION_KINDS.map((k) => [k, MAX_PLANNED_ACTIONS / 250 / 8])) }] },
  "test",
);
/** Within the limit over its own 10 days (20,000), past it when duration_days stretches it. */
const dense = parseScenario({ id: "dense", totalDays: 10, days: [{ days: "1-10", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 1000, like_post: "0-1000" } }] }, "test");
const scenarios = new Map<string, Scenario>([...builtinScenarios(), ["tiny", tiny], ["five", five], ["biggest", biggest], ["dense", dense]]);


/** Polls until fn() is truthy (test-side only). */
async function eventually(fn: () => Promise<boolean> | boolean, ms = 10_000, what = "condition"): Promise<void> {
  const until = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`${what} not met in time`);
    await sleep(5);
  }
}

/** The stored plan of a task, recomputed as StartWarming made it. */
function planOf(task: WarmingTask, scenario: Scenario, durationDays = 0): PlannedAction[] {
  return planTask(scenario, { durationDays, startAt: timestampDate(task.startedAt!), seed: task.id });
}

for (const kind of STORE_KINDS) {
  describe(`warming on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    let vault: Vault;
    let accounts: Accounts;
    let platform: ReturnType<typeof fakePlatform>;
    const newId = createIdGenerator();
    const stops: (() => Promise<void>)[] = [];

    beforeEach(async () => {
      store = await freshStore(kind);
      db = store.db;
      vault = await createVault(db, Buffer.alloc(32, 7), newId);
      accounts = createAccounts({ db, vault, newId });
      platform = fakePlatform();
    });
    afterEach(async () => {
      for (const s of stops.splice(0).reverse()) await s();
      await vault.stop();
      await store.drop();
    });

    /** A started warming instance over `on` (default: the test's store). */
    async function warming(clock: Clock, options: WarmingOptions = {}, on: Db = db): Promise<Warming> {
      const w = createWarming({
        db: on,
        peers: { accounts: localAccountsPeer(accounts), platforms: platform.peer },
        clock,
        newId,
        log,
        scenarios,
        options: { idleRecheckMs: 50, maintenanceMs: 100, retryBaseMs: 60_000, ...options },
      });
      await w.start();
      stops.push(() => w.stop(1000));
      return w;
    }

    async function account(login: string, platformName = "vk"): Promise<string> {
      return (await accounts.create(create(CreateAccountRequestSchema, { platform: platformName, login, password: "pw" }), "test")).id;
    }

    async function accountStatus(id: string): Promise<AccountStatus> {
      return (await accounts.get(id)).status;
    }

    /** Moves the fake clock in steps, letting the worker settle after each. */
    async function run(clock: FakeClock, w: Warming | Warming[], ms: number, step = HOUR): Promise<void> {
      const all = Array.isArray(w) ? w : [w];
      for (let t = 0; t < ms; t += step) {
        await clock.advance(Math.min(step, ms - t));
        for (const x of all) await x.settled();
      }
    }

    async function events(taskId: string): Promise<{ id: number; event_type: string; data: Record<string, string> }[]> {
      return (await db.query<{ id: number; event_type: string; data: Record<string, string> }>("SELECT id, event_type, data FROM warming_events WHERE task_id = $1 ORDER BY id", [taskId])).rows;
    }

    async function actionRows(taskId: string): Promise<{ seq: number; status: string; attempts: number; key: string; due_at: Date; started_at: Date | null; finished_at: Date | null }[]> {
      return (await db.query<{ seq: number; status: string; attempts: number; key: string; due_at: Date; started_at: Date | null; finished_at: Date | null }>(
        "SELECT seq, status, attempts, key, due_at, started_at, finished_at FROM warming_actions WHERE task_id = $1 ORDER BY seq",
        [taskId],
      )).rows;
    }

    test("StartWarming: NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, INVALID_ARGUMENT; the account becomes WARMING, the task RUNNING", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock);
      const acc = await account("alice");
      await rejectsWith(w.startTask({ accountId: "0123456789abcdef01234567", scenarioId: "", durationDays: 0 }, "t"), "NOT_FOUND", /account/);
      await rejectsWith(w.startTask({ accountId: acc, scenarioId: "nope", durationDays: 0 }, "t"), "NOT_FOUND", /scenario "nope".*basic/);
      await rejectsWith(w.startTask({ accountId: acc, scenarioId: "", durationDays: -1 }, "t"), "INVALID_ARGUMENT", /duration_days/);
      await rejectsWith(w.startTask({ accountId: "nope", scenarioId: "", durationDays: 0 }, "t"), "INVALID_ARGUMENT", /account_id/);
      const banned = await account("bob");
      await accounts.updateStatus(banned, AccountStatus.BANNED, "test", "test");
      await rejectsWith(w.startTask({ accountId: banned, scenarioId: "", durationDays: 0 }, "t"), "FAILED_PRECONDITION", /BANNED.*ACTIVE/);

      const task = await w.startTask({ accountId: acc, scenarioId: "", durationDays: 0 }, "t");
      assert.equal(task.status, WarmingStatus.RUNNING);
      assert.equal(task.scenarioId, "basic");
      assert.equal(task.totalDays, 14);
      assert.equal(task.progress, 0);
      assert.equal(timestampDate(task.startedAt!).getTime(), START.getTime());
      const plan = planOf(task, scenarios.get("basic")!);
      assert.equal(timestampDate(task.nextActionAt!).getTime(), plan[0].at.getTime());
      assert.equal(await accountStatus(acc), AccountStatus.WARMING);
      assert.equal((await actionRows(task.id)).length, plan.length, "the plan is materialized");
      await rejectsWith(w.startTask({ accountId: acc, scenarioId: "gentle", durationDays: 0 }, "t"), "ALREADY_EXISTS", new RegExp(task.id));

      const short = await w.startTask({ accountId: await account("carol"), scenarioId: "basic", durationDays: 7 }, "t");
      assert.equal(short.totalDays, 7);
      assert.deepEqual((await w.getTask(short.id)).id, short.id);
      await rejectsWith(w.getTask("0123456789abcdef01234567"), "NOT_FOUND");
      await rejectsWith(w.pauseTask("x", "t"), "INVALID_ARGUMENT", /task_id/);
    });

    test("the largest plan (MAX_PLANNED_ACTIONS) is written whole, row for row as planned, in batches that let other queries through", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock, { runWorker: false });
      const acc = await account("biggest");
      // A prober: one small query after another, noting when each finished. One statement (or one
      // transaction) for the whole plan held PGlite, and with it every other call, until it ended.
      let done = false;
      const finished: number[] = [];
      const probe = (async () => {
        while (!done) {
          await db.query("SELECT 1");
          finished.push(performance.now());
          await new Promise((r) => setImmediate(r));
        }
      })();
      const t0 = performance.now();
      const task = await w.startTask({ accountId: acc, scenarioId: "biggest", durationDays: 0 }, "t");
      const t1 = performance.now();
      done = true;
      await probe;
      let gap = 0;
      let last = t0;
      for (const t of finished.filter((x) => x > t0 && x <= t1)) [gap, last] = [Math.max(gap, t - last), t];
      gap = Math.max(gap, t1 - last);
      assert.ok(gap < (t1 - t0) / 4, `other queries waited ${gap.toFixed(0)} ms at once during a ${(t1 - t0).toFixed(0)} ms StartWarming`);

      assert.equal(task.status, WarmingStatus.RUNNING);
      const rows = (await db.query<{ seq: number; day: number; kind: string; due_at: Date; key: string }>("SELECT seq, day, kind, due_at, key FROM warming_actions WHERE task_id = $1 ORDER BY seq", [task.id])).rows;
      assert.equal(rows.length, MAX_PLANNED_ACTIONS);
      assert.deepEqual(rows, planOf(task, biggest).map((a) => ({ seq: a.seq, day: a.day, kind: a.kind, due_at: a.at, key: a.key })));
      const [t] = (await db.query<{ total_actions: number; next_action_at: Date }>("SELECT total_actions, next_action_at FROM warming_tasks WHERE id = $1", [task.id])).rows;
      assert.equal(t.total_actions, MAX_PLANNED_ACTIONS);
      assert.deepEqual(t.next_action_at, rows[0].due_at);
    });

    test("duration_days that would stretch a plan past MAX_PLANNED_ACTIONS is refused, naming the limit and the longest that fits", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock, { runWorker: false });
      const acc = await account("dense");
      await rejectsWith(
        w.startTask({ accountId: acc, scenarioId: "dense", durationDays: 365 }, "t"),
        "INVALID_ARGUMENT",
        new RegExp(`^duration_days 365 would give scenario dense up to 730000 planned actions, more than the limit of ${MAX_PLANNED_ACTIONS} per task; use at most 25 days$`),
      );
      assert.equal((await db.query("SELECT 1 FROM warming_tasks WHERE account_id = $1", [acc])).rows.length, 0, "nothing was written");
      assert.equal(await accountStatus(acc), AccountStatus.ACTIVE);
      // Its own 10 days fit.
      const task = await w.startTask({ accountId: acc, scenarioId: "dense", durationDays: 0 }, "t");
      assert.equal(task.status, WarmingStatus.RUNNING);
    });

    test("a time-scaled scenario runs to COMPLETED: counts and progress match the plan, each action once and in order", async () => {
      // 2 scenario days in about 0.6 s of real time.
      const clock = systemClock(600_000);
      const w = await warming(clock, { batchSize: 4, concurrency: 4 });
      const accIds = await Promise.all(["a1", "a2", "a3"].map((l) => account(l)));
      const tasks = await Promise.all(accIds.map((id) => w.startTask({ accountId: id, scenarioId: "tiny", durationDays: 0 }, "t")));
      await eventually(async () => (await Promise.all(tasks.map((t) => w.getTask(t.id)))).every((t) => t.status === WarmingStatus.COMPLETED), 20_000, "all COMPLETED");
      await w.settled();
      for (const t of tasks) {
        const got = await w.getTask(t.id);
        const plan = planOf(t, tiny);
        assert.ok(plan.length >= 9);
        assert.equal(got.actionsCompleted, plan.length);
        assert.equal(got.actionsFailed, 0);
        assert.equal(got.progress, 100);
        assert.equal(got.currentDay, 2);
        assert.ok(got.completedAt);
        assert.equal(got.nextActionAt, undefined);
        // Every planned action ran exactly once, in plan order, not before it was due.
        const calls = platform.calls.filter((c) => c.taskId === t.id);
        assert.deepEqual(
          calls.map((c) => c.key),
          plan.map((a) => a.key),
        );
        assert.deepEqual(
          calls.map((c) => c.actionType),
          plan.map((a) => ["view_profile", "like_post", "subscribe", "comment", "send_message", "repost", "view_stories", "add_friend"].indexOf(a.kind) + 1),
        );
        const rows = await actionRows(t.id);
        for (const [i, r] of rows.entries()) {
          assert.equal(r.status, "done");
          assert.equal(r.attempts, 1);
          assert.equal(r.due_at.getTime(), plan[i].at.getTime());
          assert.ok(r.started_at!.getTime() >= r.due_at.getTime(), "never before it is due");
        }
        const ev = await events(t.id);
        const types = ev.map((e) => e.event_type);
        assert.equal(types.filter((x) => x === "action_started").length, plan.length);
        assert.equal(types.filter((x) => x === "action_completed").length, plan.length);
        assert.deepEqual(
          ev.filter((e) => e.event_type === "status_changed").map((e) => e.data.to),
          ["WARMING_STATUS_RUNNING", "WARMING_STATUS_COMPLETED"],
        );
        const last = ev.filter((e) => e.event_type === "action_completed").at(-1)!;
        assert.equal(last.data.progress, "100");
        assert.equal(last.data.actions_completed, String(plan.length));
        assert.match(last.data.action_type, /^ACTION_TYPE_[A-Z_]+$/);
        assert.ok(Number(last.data.duration_ms) >= 0);
      }
      for (const id of accIds) await eventually(async () => (await accountStatus(id)) === AccountStatus.ACTIVE, 5000, "account back to ACTIVE");

      const stats = await w.statistics({ accountId: "", taskId: "", platform: "" });
      const total = tasks.reduce((n, t) => n + planOf(t, tiny).length, 0);
      assert.equal(Number(stats.actionsCompleted), total);
      assert.equal(Number(stats.actionsFailed), 0);
      assert.equal(stats.successRate, 1);
      assert.deepEqual(stats.tasksByStatus, { WARMING_STATUS_COMPLETED: 3n });
      assert.equal(
        stats.byActionType.reduce((n, k) => n + Number(k.completed), 0),
        total,
      );
      assert.equal(
        stats.byDay.reduce((n, d) => n + Number(d.completed), 0),
        total,
      );
      const one = await w.statistics({ accountId: accIds[0], taskId: "", platform: "" });
      assert.equal(Number(one.actionsCompleted), planOf(tasks[0], tiny).length);
      const byTask = await w.statistics({ accountId: "", taskId: tasks[1].id, platform: "vk" });
      assert.equal(Number(byTask.actionsCompleted), planOf(tasks[1], tiny).length);
      assert.equal(Number((await w.statistics({ accountId: "", taskId: "", platform: "telegram" })).actionsCompleted), 0);
      const future = timestampFromDate(new Date(clock.now() + 10 * DAY));
      assert.equal(Number((await w.statistics({ accountId: "", taskId: "", platform: "", from: future })).actionsCompleted), 0);
    });

    test("pause holds over several scheduled slots, resume continues in order, stop is final", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock);
      const acc = await account("p1");
      const task = await w.startTask({ accountId: acc, scenarioId: "tiny", durationDays: 0 }, "t");
      const plan = planOf(task, tiny);
      // Run until two actions are done.
      while ((await w.getTask(task.id)).actionsCompleted < 2) await run(clock, w, HOUR / 4, HOUR / 4);
      const paused = await w.pauseTask(task.id, "t");
      assert.equal(paused.status, WarmingStatus.PAUSED);
      assert.equal((await w.pauseTask(task.id, "t")).status, WarmingStatus.PAUSED, "pausing again is a no-op");
      const before = platform.calls.length;
      const doneBefore = (await w.getTask(task.id)).actionsCompleted;
      // Through several slots that fall due meanwhile: nothing runs.
      const overdueBy = (t: number) => plan.filter((a) => a.at.getTime() <= t).length;
      // Long enough for two more slots to fall due, whatever times the plan drew (a fixed 10 h
      // missed them now and then: the plan is random, seeded by the task id).
      const secondSlotAfter = plan[doneBefore + 1].at.getTime();
      await run(clock, w, Math.max(10 * HOUR, secondSlotAfter - clock.now() + HOUR));
      assert.ok(overdueBy(clock.now()) >= doneBefore + 2, "the pause spans several planned slots");
      assert.equal(platform.calls.length, before, "no action starts while paused");
      assert.equal((await w.getTask(task.id)).status, WarmingStatus.PAUSED);

      // A restart does not undo a pause.
      await w.stop(1000);
      const w2 = await warming(clock);
      await run(clock, w2, 2 * HOUR);
      assert.equal(platform.calls.length, before, "still paused after a restart");

      const resumed = await w2.resumeTask(task.id, "t");
      assert.equal(resumed.status, WarmingStatus.RUNNING);
      await w2.settled();
      assert.equal((await w2.getTask(task.id)).actionsCompleted, overdueBy(clock.now()), "what fell due during the pause ran on resume");
      await rejectsWith(w2.resumeTask("0123456789abcdef01234567", "t"), "NOT_FOUND");

      const stopped = await w2.stopTask(task.id, "operator says so", "t");
      assert.equal(stopped.status, WarmingStatus.STOPPED);
      assert.ok(stopped.completedAt);
      const n = platform.calls.length;
      await run(clock, w2, 2 * DAY, 4 * HOUR);
      assert.equal(platform.calls.length, n, "nothing runs after stop");
      assert.equal((await w2.getTask(task.id)).status, WarmingStatus.STOPPED);
      await rejectsWith(w2.resumeTask(task.id, "t"), "FAILED_PRECONDITION", /STOPPED/);
      await rejectsWith(w2.pauseTask(task.id, "t"), "FAILED_PRECONDITION", /STOPPED/);
      assert.equal((await w2.stopTask(task.id, "", "t")).status, WarmingStatus.STOPPED, "stopping again is a no-op");
      await eventually(async () => (await accountStatus(acc)) === AccountStatus.ACTIVE, 5000, "account ACTIVE after stop");
      const changes = (await events(task.id)).filter((e) => e.event_type === "status_changed");
      assert.deepEqual(
        changes.map((e) => e.data.to),
        ["WARMING_STATUS_RUNNING", "WARMING_STATUS_PAUSED", "WARMING_STATUS_RUNNING", "WARMING_STATUS_STOPPED"],
      );
      assert.equal(changes[3].data.reason, "operator says so");
      // A new task may start once the old one is stopped.
      const again = await w2.startTask({ accountId: acc, scenarioId: "five", durationDays: 0 }, "t");
      assert.equal(again.status, WarmingStatus.RUNNING);
    });

    test("an action in flight when its task is paused or stopped finishes and is recorded; nothing new starts", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock);
      const [a1, a2] = [await account("f1"), await account("f2")];
      let release!: () => void;
      let gate = new Promise<void>((r) => (release = r));
      platform.behave(() => gate);
      const t1 = await w.startTask({ accountId: a1, scenarioId: "five", durationDays: 0 }, "t");
      const t2 = await w.startTask({ accountId: a2, scenarioId: "five", durationDays: 0 }, "t");
      const plan1 = planOf(t1, five);
      const plan2 = planOf(t2, five);
      // Both first actions fall due and start, then block in the platform.
      await clock.advance(Math.max(plan1[0].at.getTime(), plan2[0].at.getTime()) - clock.now());
      await eventually(() => platform.calls.length === 2, 5000, "two actions in flight");
      await w.pauseTask(t1.id, "t");
      await w.stopTask(t2.id, "enough", "t");
      release();
      gate = Promise.resolve();
      await eventually(async () => (await w.getTask(t1.id)).actionsCompleted === 1 && (await w.getTask(t2.id)).actionsCompleted === 1, 5000, "both recorded");
      const g1 = await w.getTask(t1.id);
      const g2 = await w.getTask(t2.id);
      assert.deepEqual([g1.status, g1.progress], [WarmingStatus.PAUSED, 20]);
      assert.equal(timestampDate(g1.nextActionAt!).getTime(), plan1[1].at.getTime(), "the next action is known, not scheduled");
      assert.deepEqual([g2.status, g2.nextActionAt], [WarmingStatus.STOPPED, undefined]);
      await run(clock, w, DAY);
      assert.equal(platform.calls.length, 2, "nothing new started for the paused or the stopped task");
      await w.resumeTask(t1.id, "t");
      await run(clock, w, DAY);
      assert.equal((await w.getTask(t1.id)).status, WarmingStatus.COMPLETED);
      assert.equal((await w.getTask(t1.id)).actionsCompleted, plan1.length);
      assert.equal((await w.getTask(t2.id)).actionsCompleted, 1);
    });

    test("transient failures retry with backoff; FAILED_PRECONDITION ends the task FAILED; too many failures in a row too", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock, { maxConsecutiveFailures: 3, retryBaseMs: 10 * 60_000 });
      // 1) Two rate limits, then success: retried, nothing counted as failed.
      const a1 = await account("r1");
      let limited = 2;
      platform.behave((call) => {
        if (call.accountId === a1 && limited-- > 0) throw new AppError("RESOURCE_EXHAUSTED", "vk rate-limited this account; retry after 1 s");
      });
      const t1 = await w.startTask({ accountId: a1, scenarioId: "five", durationDays: 0 }, "t");
      await run(clock, w, 2 * DAY);
      const g1 = await w.getTask(t1.id);
      assert.equal(g1.status, WarmingStatus.COMPLETED);
      assert.equal(g1.actionsCompleted, 5);
      assert.equal(g1.actionsFailed, 0);
      const r1 = await actionRows(t1.id);
      assert.equal(r1[0].attempts, 3, "the first action took three attempts");
      const fails = (await events(t1.id)).filter((e) => e.event_type === "action_failed");
      assert.deepEqual(
        fails.map((e) => [e.data.retrying, e.data.code]),
        [
          ["true", "RESOURCE_EXHAUSTED"],
          ["true", "RESOURCE_EXHAUSTED"],
        ],
      );
      // Backoff doubles: the second retry waits twice as long as the first.
      const at = fails.map((e) => Date.parse(e.data.retry_at));
      assert.ok(at[1] - at[0] >= 20 * 60_000 - HOUR, "second retry later than the first");

      // 2) The platform says banned: FAILED at once; the account keeps the platform's BANNED.
      const a2 = await account("r2");
      platform.behave(async (call) => {
        if (call.accountId === a2) {
          await accounts.updateStatus(a2, AccountStatus.BANNED, "vk reports banned", "vk");
          throw new AppError("FAILED_PRECONDITION", "account is banned on vk: spam");
        }
      });
      const t2 = await w.startTask({ accountId: a2, scenarioId: "five", durationDays: 0 }, "t");
      await run(clock, w, DAY);
      const g2 = await w.getTask(t2.id);
      assert.equal(g2.status, WarmingStatus.FAILED);
      assert.match(g2.error, /platform refused.*FAILED_PRECONDITION: account is banned/);
      assert.equal(g2.actionsFailed, 1);
      assert.equal(platform.calls.filter((c) => c.accountId === a2).length, 1, "no more actions after the ban");
      await w.maintenance();
      assert.equal(await accountStatus(a2), AccountStatus.BANNED);

      // 3) Unavailable every time: FAILED after 3 in a row; the account goes back to ACTIVE.
      const a3 = await account("r3");
      platform.behave((call) => {
        if (call.accountId === a3) throw new AppError("UNAVAILABLE", "vk is down");
      });
      const t3 = await w.startTask({ accountId: a3, scenarioId: "five", durationDays: 0 }, "t");
      await run(clock, w, 2 * DAY);
      const g3 = await w.getTask(t3.id);
      assert.equal(g3.status, WarmingStatus.FAILED);
      assert.match(g3.error, /3 failed attempts in a row \(limit 3\); last: UNAVAILABLE: vk is down/);
      assert.equal(platform.calls.filter((c) => c.accountId === a3).length, 3);
      assert.equal(g3.actionsFailed, 1, "the action that hit the limit is recorded failed");
      await eventually(async () => (await accountStatus(a3)) === AccountStatus.ACTIVE, 5000, "account back to ACTIVE");

      // 4) A bad target (NOT_FOUND) fails that action only; the task goes on.
      const a4 = await account("r4");
      platform.behave((call) => {
        if (call.accountId === a4 && call.seq === 1) throw new AppError("NOT_FOUND", "post not found");
        if (call.accountId === a4 && call.seq === 2) return { success: false, error: "target gone" };
      });
      const t4 = await w.startTask({ accountId: a4, scenarioId: "five", durationDays: 0 }, "t");
      await run(clock, w, 2 * DAY);
      const g4 = await w.getTask(t4.id);
      assert.equal(g4.status, WarmingStatus.COMPLETED);
      assert.deepEqual([g4.actionsCompleted, g4.actionsFailed, g4.progress], [3, 2, 100]);
      const stats = await w.statistics({ accountId: a4, taskId: "", platform: "" });
      assert.equal(stats.successRate, 3 / 5);
    });

    test("restart: a new instance on the same store continues; nothing lost or counted twice; a lapsed lease is taken over", async () => {
      const clock = fakeClock(START);
      const w1 = await warming(clock);
      const ids = await Promise.all(["s1", "s2", "s3", "s4"].map((l) => account(l)));
      const tasks = await Promise.all(ids.map((id) => w1.startTask({ accountId: id, scenarioId: "tiny", durationDays: 0 }, "t")));
      await run(clock, w1, 10 * HOUR);
      const mid = (await Promise.all(tasks.map((t) => w1.getTask(t.id)))).reduce((n, t) => n + t.actionsCompleted, 0);
      assert.ok(mid > 0);
      // A slow action is in flight when the worker stops: it is released, not lost.
      platform.behave(() => sleep(300));
      // Hour by hour until one is due: the plan is random (seeded by the task ids), so a fixed span
      // may hold none, and on a loaded machine a claim may take more than a moment.
      let inFlight = false;
      for (let h = 0; h < 24 && !inFlight; h++) {
        await clock.advance(HOUR);
        const until = Date.now() + 1000;
        while (!(inFlight = w1.workerStats().inFlight > 0) && Date.now() < until) await sleep(5);
      }
      assert.ok(inFlight, "an action in flight");
      await w1.stop(0);
      platform.behave(undefined);
      const w2 = await warming(clock);
      await run(clock, w2, 2 * DAY);
      for (const t of tasks) {
        const got = await w2.getTask(t.id);
        const plan = planOf(t, tiny);
        assert.equal(got.status, WarmingStatus.COMPLETED);
        assert.equal(got.actionsCompleted, plan.length, "every action counted once");
        const rows = await actionRows(t.id);
        assert.ok(rows.every((r) => r.status === "done"));
        const done = (await events(t.id)).filter((e) => e.event_type === "action_completed").map((e) => Number(e.data.seq));
        assert.deepEqual(
          done,
          plan.map((a) => a.seq),
          "one action_completed per planned action, in order",
        );
      }

      // A worker that died mid-action: its lease lapses and another worker runs the action again; it is recorded once.
      const a = await account("s5");
      const t = await w2.startTask({ accountId: a, scenarioId: "five", durationDays: 0 }, "t");
      const plan = planOf(t, five);
      await db.query("UPDATE warming_due SET attempts = 1, lease_until = now() - interval '1 second' WHERE task_id = $1 AND seq = 0", [t.id]);
      await w2.maintenance();
      await run(clock, w2, 2 * DAY);
      const got = await w2.getTask(t.id);
      assert.equal(got.status, WarmingStatus.COMPLETED);
      assert.equal(got.actionsCompleted, plan.length);
      const rows = await actionRows(t.id);
      assert.equal(rows[0].attempts, 2, "run again after the lapsed lease");
      assert.ok((await events(t.id)).some((e) => e.event_type === "action_failed" && /lease lapsed/.test(e.data.error)));
    });

    test("StreamEvents: a subscriber reconnecting with after_event_id gets every event exactly once, in order", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock);
      const ids = await Promise.all(["e1", "e2"].map((l) => account(l)));
      const t1 = await w.startTask({ accountId: ids[0], scenarioId: "tiny", durationDays: 0 }, "t");

      const got: WarmingEvent[] = [];
      let last = "";
      // Connect, read a few, disconnect; repeat with the last id while the tasks run.
      const drive = (async () => {
        await run(clock, w, 6 * HOUR);
        await w.startTask({ accountId: ids[1], scenarioId: "tiny", durationDays: 0 }, "t");
        await run(clock, w, 2 * DAY);
      })();
      let rounds = 0;
      let finished = false;
      void drive.then(() => (finished = true));
      while (!finished || rounds < 3) {
        const ac = new AbortController();
        let n = 0;
        const stream = w.events({ taskId: "", eventTypes: [], afterEventId: last }, ac.signal);
        const timer = setTimeout(() => ac.abort(), 30);
        for await (const e of stream) {
          got.push(e);
          last = e.eventId;
          if (++n >= 3) break;
        }
        clearTimeout(timer);
        rounds++;
        if (finished) {
          // Drain what is left.
          const ac2 = new AbortController();
          const t = setTimeout(() => ac2.abort(), 300);
          for await (const e of w.events({ taskId: "", eventTypes: [], afterEventId: last }, ac2.signal)) {
            got.push(e);
            last = e.eventId;
          }
          clearTimeout(t);
          break;
        }
      }
      await drive;
      const stored = (await db.query<{ id: number }>("SELECT id FROM warming_events ORDER BY id")).rows.map((r) => String(r.id));
      // The first connection started live (empty after_event_id): it begins after the events before it.
      const firstIdx = stored.indexOf(got[0].eventId);
      assert.ok(firstIdx >= 0);
      assert.deepEqual(
        got.map((e) => e.eventId),
        stored.slice(firstIdx),
        "every event after the first, exactly once, in order",
      );
      assert.ok(rounds > 3, `reconnected several times (${rounds})`);

      // Filters: one task, some types; replay from the start.
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const only: WarmingEvent[] = [];
      for await (const e of w.events({ taskId: t1.id, eventTypes: ["status_changed"], afterEventId: "0" }, ac.signal)) only.push(e);
      assert.deepEqual(
        only.map((e) => [e.taskId, e.data.to]),
        [
          [t1.id, "WARMING_STATUS_RUNNING"],
          [t1.id, "WARMING_STATUS_COMPLETED"],
        ],
      );
      await rejectsWith(w.events({ taskId: "", eventTypes: ["nope"], afterEventId: "" }).next(), "INVALID_ARGUMENT", /event_types/);
      await rejectsWith(w.events({ taskId: "", eventTypes: [], afterEventId: "abc" }).next(), "INVALID_ARGUMENT", /after_event_id/);
      await rejectsWith(w.events({ taskId: "0123456789abcdef01234567", eventTypes: [], afterEventId: "" }).next(), "NOT_FOUND");
    });

    test("a slow subscriber is dropped with RESOURCE_EXHAUSTED naming where to resume; the workers do not wait for it", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock, { events: { bufferSize: 5 } });
      const acc = await account("slow");
      const ac = new AbortController();
      const it = w.events({ taskId: "", eventTypes: [], afterEventId: "" }, ac.signal);
      const first = it.next(); // attaches, then is never read again until the end
      await sleep(20);
      const task = await w.startTask({ accountId: acc, scenarioId: "tiny", durationDays: 0 }, "t");
      await run(clock, w, 2 * DAY, 4 * HOUR);
      assert.equal((await w.getTask(task.id)).status, WarmingStatus.COMPLETED, "the workers ran on");
      const seen: string[] = [String((await first).value?.eventId)];
      let err: unknown;
      try {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          seen.push(r.value.eventId);
        }
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof AppError && err.code === "RESOURCE_EXHAUSTED", String(err));
      assert.match((err as Error).message, new RegExp(`after_event_id=${seen.at(-1)}`));
      assert.equal(seen.length, 1 + 5, "the event handed out, then the 5 queued, then the error");
      ac.abort();
    });

    test("events past their retention are deleted by the upkeep, oldest first; newer events and the statistics stay", async () => {
      const clock = fakeClock(START);
      const w = await warming(clock, { eventRetentionMs: 7 * DAY });
      const acc = await account("keeper");
      const task = await w.startTask({ accountId: acc, scenarioId: "five", durationDays: 0 }, "t");
      await run(clock, w, DAY);
      assert.equal((await w.getTask(task.id)).status, WarmingStatus.COMPLETED);
      const all = await events(task.id);
      assert.ok(all.length >= 11, `${all.length} events`);
      // The first half were written (real time) 8 days ago, the rest 6 days ago.
      const half = all[Math.floor(all.length / 2)].id;
      await db.query("UPDATE warming_events SET created_at = now() - CASE WHEN id < $1 THEN interval '8 days' ELSE interval '6 days' END WHERE task_id = $2", [half, task.id]);
      const before = await w.statistics({ accountId: "", taskId: task.id, platform: "" });
      await w.maintenance();
      assert.deepEqual(
        (await events(task.id)).map((e) => e.id),
        all.filter((e) => e.id >= half).map((e) => e.id),
      );
      assert.deepEqual(await w.statistics({ accountId: "", taskId: task.id, platform: "" }), before);
      // A process that runs no worker (CONVEER_WARMING_WORKER=0) still prunes, on its upkeep period.
      await w.stop(1000);
      await db.query("UPDATE warming_events SET created_at = now() - interval '8 days' WHERE task_id = $1", [task.id]);
      await warming(clock, { runWorker: false, eventRetentionMs: 7 * DAY, maintenanceMs: 50 });
      await eventually(async () => (await events(task.id)).length === 0, 5000, "the API-only instance to prune");
    });

    test("ListScenarios and GetScenario", async () => {
      const w = await warming(fakeClock(START));
      const list = w.listScenarios();
      assert.ok(list.some((s) => s.id === "basic" && s.isDefault && s.totalDays === 14));
      const tinyMsg = w.getScenario("tiny");
      assert.deepEqual(
        tinyMsg.days.map((d) => [d.days, d.fromDay, d.toDay, d.startHour, d.endHour, d.actions]),
        [
          ["1", 1, 1, 0, 24, { view_profile: "3", like_post: "2" }],
          ["2", 2, 2, 0, 24, { view_profile: "2", subscribe: "1-2", view_stories: "1" }],
        ],
      );
      assert.equal(w.getScenario("").id, "basic");
      assert.throws(() => w.getScenario("nope"), (e: unknown) => e instanceof AppError && e.code === "NOT_FOUND");
    });

    if (kind === "postgres") {
      test("two worker instances on one PostgreSQL share 200+ tasks: no action run twice, none skipped", async () => {
        const TASKS = 220;
        const dbs = [openPostgres({ url: store.url, max: 8 }), openPostgres({ url: store.url, max: 8 })];
        stops.push(async () => {
          for (const d of dbs) await d.close();
        });
        // Each "process" has its own clock at the same scale: 1 scenario day ≈ 0.3 s.
        const ws = [await warming(systemClock(300_000), { batchSize: 16, concurrency: 32 }, dbs[0]), await warming(systemClock(300_000), { batchSize: 16, concurrency: 32 }, dbs[1])];
        platform.behave(() => sleep(Math.random() * 3));
        const accIds: string[] = [];
        for (let i = 0; i < TASKS; i++) accIds.push(await account(`m${i}`));
        const tasks = await Promise.all(accIds.map((id, i) => ws[i % 2].startTask({ accountId: id, scenarioId: "five", durationDays: 0 }, "t")));
        await eventually(
          async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_tasks WHERE status = 4")).rows[0].n === TASKS,
          60_000,
          "all COMPLETED",
        );
        const keys = platform.calls.map((c) => c.key);
        assert.equal(new Set(keys).size, keys.length, "no action ran twice");
        const planned = tasks.flatMap((t) => planOf(t, five).map((a) => a.key));
        assert.deepEqual([...keys].sort(), [...planned].sort(), "every planned action ran");
        const r = await db.query<{ n: number; c: number }>("SELECT count(*)::int AS n, sum(actions_completed)::int AS c FROM warming_tasks");
        assert.deepEqual(r.rows[0], { n: TASKS, c: planned.length });
        const s = ws.map((x) => x.workerStats());
        assert.ok(s[0].recorded > 0 && s[1].recorded > 0, `both workers worked: ${JSON.stringify(s)}`);
        assert.equal(s[0].recorded + s[1].recorded, planned.length);
      });
    }
  });
}
