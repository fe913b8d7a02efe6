import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { AppError } from "../errors.ts";
import { ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import type { LockedTask } from "./warming-store.ts";
import { TaskStatus } from "./warming-store.ts";
import { classify, decide, initialState, isIdle, kick, retryDelay, setMode } from "./worker.ts";
import { dayOf } from "./planner.ts";
import { statusName } from "./task-status.ts";
import { codeOf } from "../errors.ts";

const NOW = new Date("2025-03-10T12:00:00Z");
const P = { maxConsecutiveFailures: 3, retryBaseMs: 60_000, retryMaxMs: 3_600_000 };
const A = { seq: 4, attempts: 1, kind: "like_post", day: 1 };

function task(over: Partial<LockedTask> = {}): LockedTask {
  return {
    id: "t",
    account_id: "a",
    platform: "vk",
    scenario_id: "basic",
    duration_days: 0,
    status: TaskStatus.RUNNING,
    total_days: 2,
    total_actions: 10,
    day1_at: new Date("2025-03-10T00:00:00Z"),
    next_seq: 4,
    run_at: null,
    next_action_at: new Date("2025-03-10T11:59:00Z"),
    actions_completed: 3,
    actions_failed: 1,
    consecutive_failures: 0,
    progress: 40,
    current_day: 1,
    error: "",
    account_released: true,
    started_at: new Date("2025-03-10T06:00:00Z"),
    paused_at: null,
    completed_at: null,
    following_due: new Date("2025-03-10T13:00:00Z"),
    ...over,
  };
}

test("codeOf and classify read AppError and ConnectError alike", () => {
  assert.equal(codeOf(new AppError("RESOURCE_EXHAUSTED", "x")), "RESOURCE_EXHAUSTED");
  assert.equal(codeOf(new ConnectError("x", Code.FailedPrecondition)), "FAILED_PRECONDITION");
  assert.equal(codeOf(new ConnectError("x", Code.DeadlineExceeded)), "DEADLINE_EXCEEDED");
  assert.equal(codeOf(new Error("socket hang up")), "UNKNOWN");
  assert.equal(classify(new ConnectError("account is banned on vk", Code.FailedPrecondition), 5).kind, "fatal");
  const rl = classify(new AppError("RESOURCE_EXHAUSTED", "vk rate-limited this account; retry after 30 s", { reason: "RATE_LIMITED", retryAfterMs: 30_000 }), 5);
  assert.deepEqual([rl.kind, rl.kind === "transient" && rl.retryAfterMs], ["transient", 30_000]);
  assert.equal(classify(new ConnectError("down", Code.Unavailable), 5).kind, "transient");
  assert.equal(classify(new Error("socket hang up"), 5).kind, "transient");
  assert.equal(classify(new AppError("NOT_FOUND", "post"), 5).kind, "failed");
  assert.equal(classify(new AppError("INVALID_ARGUMENT", "params"), 5).kind, "failed");
});

test("classify reads the error's details (ErrorInfo reason, RetryInfo), never its message text", () => {
  // As a remote client decodes them from grpc-status-details-bin / Connect error details.
  const wire = (code: Code, message: string, ...details: [DescMessage, MessageInitShape<DescMessage>][]) => {
    const e = new ConnectError(message, code);
    e.details = details.map(([desc, init]) => ({ type: desc.typeName, value: toBinary(desc, create(desc, init)) }));
    return e;
  };
  const errorInfo = (reason: string): [DescMessage, MessageInitShape<DescMessage>] => [ErrorInfoSchema, { reason, domain: "conveer" }];
  const retry = (seconds: number, nanos = 0): [DescMessage, MessageInitShape<DescMessage>] => [RetryInfoSchema, { retryDelay: { seconds: BigInt(seconds), nanos } }];

  const rl = classify(wire(Code.ResourceExhausted, "slow down", errorInfo("RATE_LIMITED"), retry(42, 500_000_000)), 5);
  assert.deepEqual([rl.kind, rl.kind === "transient" && rl.retryAfterMs], ["transient", 42_500]);
  // The reason decides over the code: a ban is fatal whatever code carried it; a rate limit is retried.
  assert.equal(classify(wire(Code.Unavailable, "vk is unavailable", errorInfo("ACCOUNT_BANNED")), 5).kind, "fatal");
  assert.equal(classify(wire(Code.Unavailable, "vk is unavailable: wrong login or password", errorInfo("INVALID_CREDENTIALS")), 5).kind, "fatal");
  assert.equal(classify(wire(Code.FailedPrecondition, "x", errorInfo("RATE_LIMITED")), 5).kind, "transient");
  // The text is not read: "retry after" without RetryInfo sets no delay; "banned" without a reason is the code's.
  const text = classify(new AppError("RESOURCE_EXHAUSTED", "vk rate-limited this account; retry after 30 s"), 5);
  assert.deepEqual([text.kind, text.kind === "transient" && text.retryAfterMs], ["transient", undefined]);
  assert.equal(classify(wire(Code.Unavailable, "account is banned on vk"), 5).kind, "transient");
  // A reason of another domain is not ours: the code decides.
  assert.equal(classify(wire(Code.Unavailable, "x", [ErrorInfoSchema, { reason: "ACCOUNT_BANNED", domain: "example.com" }]), 5).kind, "transient");
  // RetryInfo on a store outage (no platform reason) is honoured too.
  const store = classify(new AppError("UNAVAILABLE", "the store is unreachable", { reason: "STORE_UNAVAILABLE", retryAfterMs: 2000 }), 5);
  assert.deepEqual([store.kind, store.kind === "transient" && store.retryAfterMs, store.kind === "transient" && store.ours], ["transient", 2000, true]);
  const platform = classify(new AppError("UNAVAILABLE", "vk is down", { reason: "PLATFORM_UNAVAILABLE" }), 5);
  assert.deepEqual([platform.kind, platform.kind === "transient" && platform.ours], ["transient", undefined], "a platform outage is not ours");
  // An in-process call hands the details over in Connect's outgoing shape.
  const local = new ConnectError("vk rate-limited", Code.ResourceExhausted);
  local.details = [...new AppError("RESOURCE_EXHAUSTED", "x", { reason: "RATE_LIMITED", retryAfterMs: 7000 }).details];
  const l = classify(local, 5);
  assert.deepEqual([l.kind, l.kind === "transient" && l.retryAfterMs], ["transient", 7000]);
});

test("decide: an outage of Conveer's own store is retried but not counted toward the failures in a row", () => {
  const d = decide(task({ consecutive_failures: 2 }), { ...A, attempts: 9 }, { kind: "transient", code: "UNAVAILABLE", error: "the store is unreachable", durationMs: 3, ours: true }, NOW, P);
  assert.equal(d.ended, undefined);
  assert.equal(d.action.status, "pending");
  assert.equal(d.task.consecutive_failures, 2);
  assert.equal(d.events[0].data.failures_in_a_row, "2");
  assert.ok(d.task.run_at instanceof Date && d.task.run_at > NOW, "retried later, with backoff");
});

test("retryDelay doubles from the base, is capped, and honours the platform's retry-after", () => {
  assert.deepEqual(
    [1, 2, 3, 10].map((n) => retryDelay(n, P)),
    [60_000, 120_000, 240_000, 3_600_000],
  );
  assert.equal(retryDelay(1, P, 300_000), 300_000);
});

test("dayOf: 1 before day 1, the last day after the end", () => {
  const d1 = new Date("2025-03-10T00:00:00Z");
  assert.deepEqual(
    [Date.parse("2025-03-09T12:00:00Z"), Date.parse("2025-03-10T23:59:00Z"), Date.parse("2025-03-11T00:00:00Z"), Date.parse("2025-04-01T00:00:00Z")].map((t) => dayOf(d1, 3, t)),
    [1, 1, 2, 3],
  );
});

test("decide: done advances the plan, counts, schedules the next; the last one completes the task", () => {
  const d = decide(task(), A, { kind: "done", durationMs: 12.4 }, NOW, P);
  assert.deepEqual(d.action, { task_id: "t", seq: 4, attempts: 1, status: "done", finished_at: NOW, duration_ms: 12, error: "" });
  assert.equal(d.task.next_seq, 5);
  assert.equal(d.task.actions_completed, 4);
  assert.equal(d.task.consecutive_failures, 0);
  assert.equal(d.task.progress, 50);
  assert.deepEqual(d.task.run_at, task().following_due);
  assert.deepEqual(
    d.events.map((e) => e.event_type),
    ["action_completed"],
  );
  assert.equal(d.ended, undefined);
  const last = decide(task({ total_actions: 5, following_due: null }), A, { kind: "done", durationMs: 1 }, NOW, P);
  assert.equal(last.ended, TaskStatus.COMPLETED);
  assert.deepEqual([last.task.status, last.task.progress, last.task.run_at, last.task.account_released], [TaskStatus.COMPLETED, 100, null, false]);
  assert.deepEqual(
    last.events.map((e) => [e.event_type, e.data.to]),
    [
      ["action_completed", undefined],
      ["status_changed", statusName(TaskStatus.COMPLETED)],
    ],
  );
});

test("decide: a transient failure retries (pending, backoff) until the limit, then the task FAILS", () => {
  const t1 = decide(task(), A, { kind: "transient", code: "UNAVAILABLE", error: "down", durationMs: 3 }, NOW, P);
  assert.equal(t1.action.status, "pending");
  assert.equal(t1.task.consecutive_failures, 1);
  assert.deepEqual(t1.task.run_at, new Date(NOW.getTime() + 60_000));
  assert.equal(t1.task.next_seq, undefined, "the plan does not move");
  assert.equal(t1.events[0].data.retrying, "true");
  const t3 = decide(task({ consecutive_failures: 2 }), { ...A, attempts: 3 }, { kind: "transient", code: "UNAVAILABLE", error: "down", durationMs: 3 }, NOW, P);
  assert.equal(t3.ended, TaskStatus.FAILED);
  assert.equal(t3.action.status, "failed");
  assert.equal(t3.task.actions_failed, 2);
  assert.match(t3.task.error!, /3 failed attempts in a row \(limit 3\); last: UNAVAILABLE: down/);
});

test("decide: fatal ends FAILED at once; a plain failure moves on; a paused task schedules nothing; an ended task only counts", () => {
  const f = decide(task(), A, { kind: "fatal", code: "FAILED_PRECONDITION", error: "banned", durationMs: 1 }, NOW, P);
  assert.equal(f.ended, TaskStatus.FAILED);
  assert.match(f.task.error!, /platform refused like_post/);
  const n = decide(task(), A, { kind: "failed", code: "NOT_FOUND", error: "post", durationMs: 1 }, NOW, P);
  assert.deepEqual([n.action.status, n.task.next_seq, n.task.actions_failed, n.task.consecutive_failures, n.ended], ["failed", 5, 2, 1, undefined]);
  const p = decide(task({ status: TaskStatus.PAUSED }), A, { kind: "done", durationMs: 1 }, NOW, P);
  assert.deepEqual([p.task.run_at, p.task.next_action_at], [null, task().following_due]);
  const s = decide(task({ status: TaskStatus.STOPPED, next_action_at: null }), A, { kind: "fatal", code: "FAILED_PRECONDITION", error: "x", durationMs: 1 }, NOW, P);
  assert.deepEqual([s.ended, s.task.status, s.task.actions_failed, s.task.run_at], [undefined, undefined, 2, null]);
  const r = decide(task({ status: TaskStatus.STOPPED }), A, { kind: "transient", code: "UNAVAILABLE", error: "x", durationMs: 1 }, NOW, P);
  assert.deepEqual([r.action.status, r.task], ["pending", {}]);
});

test("decide: released goes back to pending, claimable now, without counting a failure", () => {
  const r = decide(task({ consecutive_failures: 2 }), A, { kind: "released", error: "stopping" }, NOW, P);
  assert.deepEqual(r.action.status, "pending");
  assert.deepEqual(r.task, { run_at: NOW });
  assert.equal(r.events[0].data.retrying, "true");
});

test("worker modes: the legal changes, the illegal ones throw, staying is a no-op", () => {
  const s = initialState();
  assert.equal(s.mode, "stopped");
  assert.throws(() => setMode(s, "waiting"), /no mode change from stopped to waiting/);
  setMode(s, "claiming");
  setMode(s, "claiming");
  setMode(s, "backlogged");
  assert.throws(() => setMode(s, "waiting"), /from backlogged to waiting/, "a backlog claims before it waits");
  setMode(s, "claiming");
  setMode(s, "waiting");
  setMode(s, "draining");
  assert.throws(() => setMode(s, "claiming"), /from draining to claiming/, "a draining worker never claims again");
  setMode(s, "stopped");
  setMode(s, "claiming");
});

test("worker modes: a kick wakes a waiting worker (claiming) and is remembered; it leaves a backlog or a drain alone", () => {
  const s = initialState();
  setMode(s, "claiming");
  setMode(s, "waiting");
  let woke = 0;
  s.wake = () => woke++;
  kick(s);
  assert.deepEqual([s.mode, s.kicked, woke, s.wake], ["claiming", true, 1, undefined]);
  kick(s);
  assert.equal(woke, 1, "the wait ends once");
  setMode(s, "backlogged");
  kick(s);
  assert.equal(s.mode, "backlogged");
  setMode(s, "draining");
  kick(s);
  assert.equal(s.mode, "draining");
});

test("worker modes: idle only while waiting with nothing in flight, unrecorded or being recorded", () => {
  const s = initialState();
  assert.equal(isIdle(s), false, "stopped is not idle");
  setMode(s, "claiming");
  assert.equal(isIdle(s), false);
  setMode(s, "waiting");
  assert.equal(isIdle(s), true);
  s.flushing = Promise.resolve();
  assert.equal(isIdle(s), false);
  s.flushing = undefined;
  s.results.push({ claimed: { task_id: "t", ...A }, outcome: { kind: "released", error: "x" }, at: NOW });
  assert.equal(isIdle(s), false);
  s.results.length = 0;
  s.inFlight.set("t:4", { claimed: {} as never, done: Promise.resolve() });
  assert.equal(isIdle(s), false);
  s.inFlight.clear();
  kick(s);
  assert.equal(isIdle(s), false, "a kick means something may be due");
});
