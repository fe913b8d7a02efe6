import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ActionRateMinuteSchema, ActionRateSchema } from "../gen/conveer/v1/warming_pb.js";
import type { ActionRate } from "../gen/conveer/v1/warming_pb.js";
import type { Queryable } from "../store/db.ts";
import { actionsPerMinute } from "./action-rate-store.ts";
import type { MinuteCountRow } from "./action-rate-store.ts";

/** Minutes GetActionRate answers: the last hour, the current minute included. */
export const RATE_MINUTES = 60;

const MINUTE_MS = 60_000;

/**
 * GetActionRate: actions completed and failed per real-time minute of the last hour, from the
 * action events' created_at. Counts are exact across replicas (every recording writes its events
 * in the transaction of the change), with one skew: created_at is the writing transaction's start,
 * so an action whose transaction starts in one minute and commits in the next counts in the first.
 *
 * A finished minute does not change, so each process keeps the minutes that ended at least a
 * minute before the current one began (by the store's clock) and asks the store only for the rest:
 * the current and the previous minute's events (plus those since its last call) instead of an
 * hour's (3.6 million at 1,000 actions/s). A transaction that commits more than a minute after its
 * minute ended (a recording is one short statement) is missed by a process that had already kept
 * that minute; another process, or this one after a restart, counts it.
 */
export function createActionRate(db: Queryable) {
  /** Counts of kept minutes, by start (epoch ms); every minute before `keptUntil` is here or was zero. */
  const kept = new Map<number, MinuteCountRow>();
  let keptUntil = 0;
  /**
   * The read in progress: callers that come meanwhile share it (one cold read of the hour, not one
   * per console opened at once), so such a caller's answer may be a few ms older than its call.
   */
  let reading: Promise<ActionRate> | undefined;

  /** The last RATE_MINUTES minutes, oldest first, every one present. */
  function read(): Promise<ActionRate> {
    reading ??= readStore().finally(() => (reading = undefined));
    return reading;
  }

  async function readStore(): Promise<ActionRate> {
    const from = keptUntil;
    const { current, rows } = await actionsPerMinute(db, from ? new Date(from) : null, RATE_MINUTES);
    if (from > current) {
      // The store's clock went back past what was kept: start over.
      kept.clear();
      keptUntil = 0;
      return readStore();
    }
    const first = current - (RATE_MINUTES - 1) * MINUTE_MS;
    const fresh = new Map(rows.map((r) => [r.minute, r]));
    const minutes: MinuteCountRow[] = [];
    for (let m = first; m <= current; m += MINUTE_MS) minutes.push((m < from ? kept.get(m) : fresh.get(m)) ?? { minute: m, completed: 0, failed: 0 });
    keep(minutes, Math.max(from, first), current - MINUTE_MS);
    return create(ActionRateSchema, {
      minutes: minutes.map((m) => create(ActionRateMinuteSchema, { start: timestampFromMs(m.minute), completed: BigInt(m.completed), failed: BigInt(m.failed) })),
    });
  }

  return { read };

  /** Keeps the minutes in [from, until) of this answer (until: the first minute still open), drops those out of the hour. */
  function keep(minutes: readonly MinuteCountRow[], from: number, until: number): void {
    if (until <= keptUntil) return;
    for (const m of minutes) {
      if (m.minute >= from && m.minute < until && (m.completed || m.failed)) kept.set(m.minute, m);
    }
    keptUntil = until;
    const oldest = until - RATE_MINUTES * MINUTE_MS;
    for (const m of kept.keys()) if (m < oldest) kept.delete(m);
  }
}

/** GetActionRate's per-process reader. */
export type ActionRateReader = ReturnType<typeof createActionRate>;
