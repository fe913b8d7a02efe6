import { test } from "node:test";
import assert from "node:assert/strict";
import { fakeClock, systemClock } from "./clock.ts";

test("systemClock: scenario time runs timeScale times faster; sleep waits scenario time", async () => {
  const real = systemClock();
  assert.ok(Math.abs(real.now() - Date.now()) < 50);

  const fast = systemClock(1440); // a day per minute
  const t0 = fast.now();
  const r0 = Date.now();
  await fast.sleep(60_000); // a scenario minute ≈ 42 real ms
  const realMs = Date.now() - r0;
  assert.ok(fast.now() - t0 >= 60_000, "slept at least the scenario span");
  assert.ok(realMs < 1_000, `took ${realMs} real ms`);
  assert.throws(() => systemClock(0), RangeError);
  assert.throws(() => systemClock(Number.NaN), RangeError);
});

test("systemClock: sleep rejects with the signal's reason on abort", async () => {
  const clock = systemClock();
  const ac = new AbortController();
  const p = clock.sleep(60_000, ac.signal);
  ac.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  await assert.rejects(clock.sleep(10, AbortSignal.abort()), { name: "AbortError" });
});

test("fakeClock: advance wakes sleepers in due order at their times, including ones added while advancing", async () => {
  const clock = fakeClock(new Date("2025-01-01T00:00:00Z"));
  const start = clock.now();
  const log: string[] = [];
  const worker = async (name: string, ms: number) => {
    await clock.sleep(ms);
    log.push(`${name}@${clock.now() - start}`);
  };
  const a = worker("a", 300);
  const b = worker("b", 100);
  const chain = (async () => {
    await clock.sleep(150);
    log.push(`c1@${clock.now() - start}`);
    await clock.sleep(100);
    log.push(`c2@${clock.now() - start}`);
  })();
  await clock.advance(0);
  assert.equal(clock.pending(), 3);
  await clock.advance(200);
  assert.deepEqual(log, ["b@100", "c1@150"]);
  assert.equal(clock.now() - start, 200);
  await clock.advance(1000);
  await Promise.all([a, b, chain]);
  assert.deepEqual(log, ["b@100", "c1@150", "c2@250", "a@300"]);
  assert.equal(clock.now() - start, 1200);
  assert.equal(clock.pending(), 0);
  await clock.sleep(0); // zero resolves at once
});

test("fakeClock: abort removes the sleeper and rejects with the reason", async () => {
  const clock = fakeClock(0);
  const ac = new AbortController();
  const p = clock.sleep(1000, ac.signal);
  assert.equal(clock.pending(), 1);
  ac.abort();
  await assert.rejects(p, { name: "AbortError" });
  assert.equal(clock.pending(), 0);
  await assert.rejects(clock.sleep(5, AbortSignal.abort()), { name: "AbortError" });
});
