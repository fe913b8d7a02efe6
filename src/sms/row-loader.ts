import type { Db } from "../store/db.ts";
import * as store from "./sms-store.ts";
import type { ActivationRow } from "./sms-store.ts";

/** Batched reads of activations by id. */
export type RowLoader = { load(id: string): Promise<ActivationRow | undefined> };

/**
 * Reads activations by id in batches: every read asked for in one turn of the event loop goes out
 * as one query, so ten thousand GetCode calls arriving together cost a handful of queries.
 */
export function createRowLoader(db: Db): RowLoader {
  let pending: Map<string, PromiseWithResolvers<ActivationRow | undefined>[]> | undefined;
  async function flush(batch: Map<string, PromiseWithResolvers<ActivationRow | undefined>[]>): Promise<void> {
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      try {
        const rows = new Map((await store.getActivations(db, chunk)).map((r) => [r.id, r]));
        for (const id of chunk) for (const w of batch.get(id)!) w.resolve(rows.get(id));
      } catch (err) {
        for (const id of chunk) for (const w of batch.get(id)!) w.reject(err);
      }
    }
  }
  return {
    load(id: string): Promise<ActivationRow | undefined> {
      if (!pending) {
        const batch = (pending = new Map());
        setImmediate(() => {
          pending = undefined;
          void flush(batch);
        });
      }
      const w = Promise.withResolvers<ActivationRow | undefined>();
      const list = pending.get(id);
      if (list) list.push(w);
      else pending.set(id, [w]);
      return w.promise;
    },
  };
}
