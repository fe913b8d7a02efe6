import DataLoader from "dataloader";
import { callDeadline, withOwnDeadline } from "./call-deadline.ts";

/** A read of one row by key, answered by whichever batch it joins. */
export type BatchedRead<K, V> = (key: K) => Promise<V | undefined>;

/**
 * Point reads coalesced into one query per turn of the event loop (DataLoader, no cache: every
 * read sees the store as it is when its batch runs, never an earlier answer). Reads that arrive
 * while the loop handles one round of I/O (calls parsed from the same socket reads, in-process
 * peer calls) share one statement of up to `maxBatch` keys instead of a round trip each: fewer
 * pool checkouts, protocol messages and syscalls per call. A batch runs under the latest deadline
 * of its callers (none if any caller has none); a failure of its query fails every read in it.
 */
export function batchedReads<K, V>(readMany: (keys: readonly K[]) => Promise<Map<K, V>>, maxBatch = 256): BatchedRead<K, V> {
  type Req = { key: K; deadline: number | undefined };
  const loader = new DataLoader<Req, V | undefined>(
    async (reqs) => {
      const deadline = reqs.some((r) => r.deadline === undefined) ? undefined : Math.max(...reqs.map((r) => r.deadline as number));
      const keys = [...new Set(reqs.map((r) => r.key))];
      const found = await withOwnDeadline(deadline, () => readMany(keys));
      return reqs.map((r) => found.get(r.key));
    },
    { cache: false, maxBatchSize: maxBatch, batchScheduleFn: (run) => setImmediate(run) },
  );
  return (key) => loader.load({ key, deadline: callDeadline() });
}
