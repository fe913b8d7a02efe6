import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CodeWaiters } from "./code-waiters.ts";
import type { WaitResult } from "./code-waiters.ts";

describe("CodeWaiters", () => {
  test("wake delivers to every waiter on the key and only to them", async () => {
    const w = new CodeWaiters<string>();
    const soon = Date.now() + 10_000;
    const a1 = w.wait("a", soon);
    const a2 = w.wait("a", soon);
    const b = w.wait("b", soon);
    assert.equal(w.size, 3);
    assert.equal(w.wake("a", "111"), 2);
    assert.deepEqual(await Promise.all([a1, a2]), [
      { kind: "woken", value: "111" },
      { kind: "woken", value: "111" },
    ]);
    assert.equal(w.has("a"), false);
    assert.equal(w.wake("a", "again"), 0);
    assert.equal(w.size, 1);
    w.wake("b", "222");
    assert.deepEqual(await b, { kind: "woken", value: "222" });
    assert.equal(w.size, 0);
  });

  test("deadlines fire in order, never early, from one timer", async () => {
    const w = new CodeWaiters<string>();
    const start = Date.now();
    const n = 2000;
    const ends: { deadline: number; at: number; r: WaitResult<string> }[] = [];
    const all: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const deadline = start + 20 + ((i * 7919) % 180);
      all.push(w.wait(`k${i % 300}`, deadline).then((r) => void ends.push({ deadline, at: Date.now(), r })));
    }
    // Wake a third of the keys early: their waiters leave the heap from the middle.
    for (let k = 0; k < 300; k += 3) w.wake(`k${k}`, "code");
    await Promise.all(all);
    const timedOut = ends.filter((e) => e.r.kind === "deadline");
    assert.ok(timedOut.length > 1000 && timedOut.length < n);
    for (const e of timedOut) assert.ok(e.at >= e.deadline - 1, `fired ${e.deadline - e.at} ms early`);
    for (let i = 1; i < timedOut.length; i++) assert.ok(timedOut[i].deadline >= timedOut[i - 1].deadline, "in deadline order");
    assert.equal(w.size, 0);
  });

  test("an abort ends only that wait and removes its listener; close ends the rest", async () => {
    const w = new CodeWaiters<string>();
    const ac = new AbortController();
    const far = Date.now() + 60_000;
    const aborted = w.wait("x", far, ac.signal);
    const other = w.wait("x", far);
    ac.abort(new Error("client went away"));
    const r = await aborted;
    assert.equal(r.kind, "aborted");
    assert.equal((r as { reason: Error }).reason.message, "client went away");
    assert.equal(w.size, 1);
    assert.deepEqual(await w.wait("y", far, AbortSignal.abort()).then((x) => x.kind), "aborted");
    w.close();
    assert.deepEqual(await other, { kind: "closed" });
    assert.deepEqual(await w.wait("z", far), { kind: "closed" });
    assert.equal(w.size, 0);
  });
});
