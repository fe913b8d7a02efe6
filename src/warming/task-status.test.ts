import { test } from "node:test";
import assert from "node:assert/strict";
import type { TaskRow } from "./warming-store.ts";
import { TaskStatus } from "./warming-store.ts";
import { abandoned, applies, pause, recovered, run, started, statusName, stop } from "./task-status.ts";

const NOW = Date.parse("2025-03-12T12:00:00Z");

function task(over: Partial<TaskRow> = {}): TaskRow {
  return {
    id: "t1",
    account_id: "a",
    platform: "vk",
    scenario_id: "basic",
    duration_days: 0,
    status: TaskStatus.RUNNING,
    total_days: 5,
    total_actions: 10,
    day1_at: new Date("2025-03-10T00:00:00Z"),
    next_seq: 4,
    run_at: new Date("2025-03-12T13:00:00Z"),
    next_action_at: new Date("2025-03-12T13:00:00Z"),
    actions_completed: 3,
    actions_failed: 1,
    consecutive_failures: 0,
    progress: 40,
    current_day: 3,
    error: "",
    account_released: true,
    started_at: new Date("2025-03-10T06:00:00Z"),
    paused_at: null,
    completed_at: null,
    ...over,
  };
}

const { PENDING, RUNNING, PAUSED, COMPLETED, FAILED, STOPPED } = TaskStatus;

test("statusName names every status, UNSPECIFIED for an unknown one", () => {
  assert.equal(statusName(RUNNING), "WARMING_STATUS_RUNNING");
  assert.equal(statusName(STOPPED), "WARMING_STATUS_STOPPED");
  assert.equal(statusName(99), "WARMING_STATUS_UNSPECIFIED");
});

test("applies: each request from its statuses, a no-op where it leads, FAILED_PRECONDITION elsewhere", () => {
  const table: [Parameters<typeof applies>[0], number, boolean | RegExp][] = [
    ["pause", RUNNING, true],
    ["pause", PAUSED, false],
    ["pause", PENDING, /task t1 is WARMING_STATUS_PENDING; only a WARMING_STATUS_RUNNING task can be paused/],
    ["pause", COMPLETED, /only a WARMING_STATUS_RUNNING task can be paused/],
    ["resume", PAUSED, true],
    ["resume", RUNNING, false],
    ["resume", PENDING, /task t1 is WARMING_STATUS_PENDING; only a WARMING_STATUS_PAUSED task can be resumed/],
    ["resume", STOPPED, /only a WARMING_STATUS_PAUSED task can be resumed/],
    ["stop", PENDING, true],
    ["stop", RUNNING, true],
    ["stop", PAUSED, true],
    ["stop", STOPPED, false],
    ["stop", COMPLETED, /task t1 already ended \(WARMING_STATUS_COMPLETED\); only an unfinished task can be stopped/],
    ["stop", FAILED, /already ended \(WARMING_STATUS_FAILED\)/],
  ];
  for (const [request, status, want] of table) {
    const t = { id: "t1", status };
    if (typeof want === "boolean") assert.equal(applies(request, t), want, `${request} from ${statusName(status)}`);
    else assert.throws(() => applies(request, t), (err: Error & { code?: string }) => err.code === "FAILED_PRECONDITION" && want.test(err.message), `${request} from ${statusName(status)}`);
  }
});

test("pause and stop: the updates they write", () => {
  assert.deepEqual(pause(task(), NOW), { status: PAUSED, run_at: null, paused_at: new Date(NOW) });
  assert.equal(pause(task({ status: PAUSED }), NOW), undefined);
  assert.deepEqual(stop(task({ status: PAUSED }), NOW), { status: STOPPED, run_at: null, next_action_at: null, completed_at: new Date(NOW), account_released: false, current_day: 3 });
  assert.equal(stop(task({ status: STOPPED }), NOW), undefined);
});

test("run: RUNNING from where the plan stands (not scheduled while an action is in flight), COMPLETED when nothing is left", () => {
  const paused = task({ status: PAUSED, run_at: null, paused_at: new Date(NOW - 1000) });
  assert.deepEqual(run(paused, NOW), { status: RUNNING, run_at: paused.next_action_at, paused_at: null, current_day: 3 });
  assert.deepEqual(run(paused, NOW, true), { status: RUNNING, run_at: null, paused_at: null, current_day: 3 });
  assert.deepEqual(run(task({ status: PENDING, next_action_at: null }), NOW).run_at, new Date(NOW), "no due time: due now");
  assert.deepEqual(run(task({ status: PAUSED, next_seq: 10 }), NOW), {
    status: COMPLETED,
    completed_at: new Date(NOW),
    run_at: null,
    next_action_at: null,
    account_released: false,
    progress: 100,
    paused_at: null,
    current_day: 5,
  });
});

test("starts: started and recovered run a PENDING task; abandoned fails it; neither touches a task that moved on", () => {
  const pending = task({ status: PENDING });
  assert.equal(started(pending, NOW)?.status, RUNNING);
  assert.deepEqual(started(task({ status: STOPPED, account_released: true }), NOW), { account_released: false }, "stopped while starting: release again");
  assert.equal(started(task({ status: STOPPED, account_released: false }), NOW), undefined);
  assert.equal(recovered(pending, NOW)?.status, RUNNING);
  assert.equal(recovered(task({ status: STOPPED }), NOW), undefined);
  assert.deepEqual(abandoned(pending, NOW), { status: FAILED, error: "StartWarming was interrupted before the account became WARMING; start it again", completed_at: new Date(NOW) });
  assert.equal(abandoned(task({ status: RUNNING }), NOW), undefined);
});
