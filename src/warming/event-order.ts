import type { EventRow } from "./warming-store.ts";

/**
 * The event hub's ordering rule, pure: which rows read after the watermark may be delivered, and
 * when a gap (ids not visible yet) is waited for, witnessed or skipped. events.ts explains why.
 */

/** A snapshot ("xmin:xmax:xip1,xip2"): its xmax and in-progress transaction ids. */
export type Snapshot = { xmax: bigint; xip: bigint[] };

/** Parses pg_current_snapshot()'s text form. */
export function parseSnapshot(text: string): Snapshot {
  const [, xmax = "0", xip = ""] = text.split(":");
  return { xmax: BigInt(xmax), xip: xip ? xip.split(",").map((x) => BigInt(x)) : [] };
}

/**
 * Who may still hold ids that a snapshot did not show: the snapshot's in-progress list, and (once a
 * witness id taken after it is known) every id in [xmax, witness).
 */
export type Suspects = { snap: Snapshot; witness?: bigint };

/** True when a suspect is still in progress in `now` (a later snapshot); without a witness, always true. */
export function suspectsRunning(s: Suspects, now: Snapshot): boolean {
  if (s.witness === undefined) return true;
  const listed = new Set(s.snap.xip);
  return now.xip.some((x) => listed.has(x) || (x >= s.snap.xmax && x < s.witness!)) || now.xmax <= s.witness;
}

/** Every id ≤ watermark is settled; `gap`: the hub waits after `at` since `since` (real ms) for the suspects. */
export type Order = { watermark: number; gap?: { at: number; suspects: Suspects; since: number } };

/** How long a gap is re-checked before a witness is taken, and the longest it is waited for (real ms). */
export type GapTimes = { gapRecheckMs: number; maxGapWaitMs: number };

/**
 * What one read does: the new order, the rows to deliver (in id order), and what next: "ok", "gap"
 * (the writer may still commit: re-check soon) or "witness" (the gap lingers: take a witness id,
 * then read again). `skipped`: a gap given up on after maxGapWaitMs (the hub warns).
 */
export type Step = { order: Order; deliver: EventRow[]; next: "ok" | "gap" | "witness"; skipped?: { from: number; to: number; waitedMs: number } };

/** Walks rows read after the watermark in one snapshot; stops at a gap that may still fill. `now`: real ms. */
export function advance(order: Order, rows: readonly EventRow[], snap: Snapshot, now: number, t: GapTimes): Step {
  let { watermark, gap } = order;
  const deliver: EventRow[] = [];
  let skipped: Step["skipped"];
  for (const e of rows) {
    if (e.id <= watermark) continue;
    if (e.id !== watermark + 1) {
      // Ids watermark+1 .. e.id-1 are not visible in this snapshot, e is.
      if (!gap || gap.at !== watermark) return { order: { watermark, gap: { at: watermark, suspects: { snap }, since: now } }, deliver, next: "gap", skipped };
      const waited = now - gap.since;
      // Writers usually commit within milliseconds; a witness (a transaction id) only for gaps that linger.
      if (gap.suspects.witness === undefined) return { order: { watermark, gap }, deliver, next: waited < t.gapRecheckMs ? "gap" : "witness", skipped };
      if (suspectsRunning(gap.suspects, snap)) {
        if (waited < t.maxGapWaitMs) return { order: { watermark, gap }, deliver, next: "gap", skipped };
        skipped = { from: watermark + 1, to: e.id - 1, waitedMs: waited };
      }
      gap = undefined;
    }
    deliver.push(e);
    watermark = e.id;
  }
  return { order: { watermark, gap }, deliver, next: "ok", skipped };
}

/** The order with a witness transaction id (taken after the gap's snapshot) for its gap. */
export function witnessed(order: Order, witness: bigint): Order {
  return order.gap ? { ...order, gap: { ...order.gap, suspects: { ...order.gap.suspects, witness } } } : order;
}
