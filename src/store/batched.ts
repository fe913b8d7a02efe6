import DataLoader from "dataloader";
import { callDeadline, withOwnDeadline } from "./call-deadline.ts";

/** One item's part of a batched statement: a row read by key, or a write whose outcome is answered. */
export type Batched<K, V> = (key: K) => Promise<V | undefined>;

/**
 * How a batch goes out. `maxBatch`: the most items one statement carries (256 by default).
 * `oneInFlight`: at most one statement of this batcher runs at a time, and the calls that arrive
 * while it runs go out together once it ends (for writes that come a few at a time from many
 * concurrent callers, such as the registrations' step moves: bigger batches, fewer statements, for
 * at most one statement's wait more).
 */
export type BatchOptions = { maxBatch?: number; oneInFlight?: boolean };

/**
 * Calls coalesced into one statement per turn of the event loop (DataLoader, no cache: every
 * call sees the store as it is when its batch runs, never an earlier answer). Calls that arrive
 * while the loop handles one round of I/O (calls parsed from the same socket reads, in-process
 * peer calls, steps of concurrent registrations) share one statement (of up to `maxBatch` items)
 * instead of a round trip each: fewer pool checkouts, protocol messages and syscalls per call.
 * `many` answers per item (absent: undefined), for point reads (`WHERE id = ANY`) and for
 * independent writes alike (each item's own guard in one UPDATE … FROM unnest). A batch runs
 * under the latest deadline of its callers (none if any caller has none); a failure of its
 * statement fails every call in it.
 */
export function batched<K, V>(many: (keys: readonly K[]) => Promise<Map<K, V>>, opts: BatchOptions = {}): Batched<K, V> {
  type Req = { key: K; deadline: number | undefined };
  const run = async (reqs: readonly Req[]) => {
    const deadline = reqs.some((r) => r.deadline === undefined) ? undefined : Math.max(...reqs.map((r) => r.deadline as number));
    const keys = [...new Set(reqs.map((r) => r.key))];
    const found = await withOwnDeadline(deadline, () => many(keys));
    return reqs.map((r) => found.get(r.key));
  };
  let schedule = (dispatch: () => void): void => void setImmediate(dispatch);
  let batch = run;
  if (opts.oneInFlight) {
    // busy from a batch's scheduling until its statement ends; batches made meanwhile queue, in order.
    let busy = false;
    const queued: (() => void)[] = [];
    const start = (dispatch: () => void) => {
      busy = true;
      setImmediate(dispatch);
    };
    schedule = (dispatch) => {
      if (busy) queued.push(dispatch);
      else start(dispatch);
    };
    batch = async (reqs) => {
      try {
        return await run(reqs);
      } finally {
        const next = queued.shift();
        if (next) start(next);
        else busy = false;
      }
    };
  }
  const loader = new DataLoader<Req, V | undefined>(batch, { cache: false, maxBatchSize: opts.maxBatch ?? 256, batchScheduleFn: schedule });
  return (key) => loader.load({ key, deadline: callDeadline() });
}
