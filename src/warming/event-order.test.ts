import { test } from "node:test";
import assert from "node:assert/strict";
import { advance, parseSnapshot, witnessed } from "./event-order.ts";
import type { Order } from "./event-order.ts";
import type { EventRow } from "./warming-store.ts";

const T = { gapRecheckMs: 20, maxGapWaitMs: 30_000 };
const AT = new Date("2025-03-10T06:00:00Z");
const row = (id: number): EventRow => ({ id, task_id: "t", event_type: "status_changed", at: AT, data: {} });
const rows = (...ids: number[]) => ids.map(row);
const ids = (es: readonly EventRow[]) => es.map((e) => e.id);
const S1 = parseSnapshot("100:105:101,103");

test("advance: consecutive ids are delivered and move the watermark; ids at or below it are skipped", () => {
  const r = advance({ watermark: 2 }, rows(1, 2, 3, 4, 5), S1, 0, T);
  assert.deepEqual(ids(r.deliver), [3, 4, 5]);
  assert.deepEqual([r.order.watermark, r.next, r.skipped], [5, "ok", undefined]);
  const none = advance({ watermark: 5 }, [], S1, 0, T);
  assert.deepEqual([none.deliver, none.order.watermark, none.next], [[], 5, "ok"]);
});

test("advance: a gap stops delivery and is remembered with its snapshot; a later read fills it", () => {
  const first = advance({ watermark: 0 }, rows(1, 2, 4, 5), S1, 1000, T);
  assert.deepEqual(ids(first.deliver), [1, 2], "up to the gap");
  assert.equal(first.next, "gap");
  assert.deepEqual(first.order, { watermark: 2, gap: { at: 2, suspects: { snap: S1 }, since: 1000 } });
  const soon = advance(first.order, rows(4, 5), S1, 1010, T);
  assert.deepEqual([ids(soon.deliver), soon.next, soon.order], [[], "gap", first.order], "still within the re-check");
  const filled = advance(first.order, rows(3, 4, 5), S1, 1010, T);
  assert.deepEqual([ids(filled.deliver), filled.next, filled.order.watermark], [[3, 4, 5], "ok", 5]);
});

test("advance: a lingering gap asks for a witness; it waits while a suspect runs, moves past once none does", () => {
  const gap = advance({ watermark: 2 }, rows(4), S1, 1000, T).order;
  assert.equal(advance(gap, rows(4), S1, 1000 + T.gapRecheckMs, T).next, "witness");
  const w: Order = witnessed(gap, 110n);
  assert.equal(w.gap?.suspects.witness, 110n);
  assert.equal(w.gap?.since, 1000, "the wait keeps its start");
  const running = advance(w, rows(4), parseSnapshot("103:112:103"), 1100, T);
  assert.deepEqual([running.deliver, running.next], [[], "gap"], "103 was in progress in S1 and still is");
  const newer = advance(w, rows(4, 5), parseSnapshot("111:115:111"), 1100, T);
  assert.deepEqual([ids(newer.deliver), newer.next, newer.order.gap, newer.skipped], [[4, 5], "ok", undefined, undefined], "only transactions after the witness run: 3 was rolled back");
});

test("advance: a gap held past maxGapWaitMs is skipped and reported", () => {
  const w = witnessed(advance({ watermark: 2 }, rows(6), S1, 1000, T).order, 110n);
  const r = advance(w, rows(6, 7), parseSnapshot("101:112:101"), 1000 + T.maxGapWaitMs, T);
  assert.deepEqual(ids(r.deliver), [6, 7]);
  assert.deepEqual(r.skipped, { from: 3, to: 5, waitedMs: T.maxGapWaitMs });
  assert.deepEqual([r.order.watermark, r.order.gap, r.next], [7, undefined, "ok"]);
});

test("advance: a gap remembered at an older watermark is a new gap (its own snapshot and start)", () => {
  const old: Order = { watermark: 5, gap: { at: 2, suspects: { snap: S1, witness: 110n }, since: 0 } };
  const r = advance(old, rows(7), parseSnapshot("120:125:"), 5000, T);
  assert.deepEqual([r.next, r.order.gap], ["gap", { at: 5, suspects: { snap: parseSnapshot("120:125:") }, since: 5000 }]);
  assert.equal(witnessed({ watermark: 1 }, 5n).gap, undefined, "no gap: nothing to witness");
});
