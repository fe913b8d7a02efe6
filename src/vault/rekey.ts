import type { Db, Queryable, Transaction } from "../store/db.ts";
import { wrapKey } from "./cipher.ts";
import { unwrapMaster } from "./vault.ts";

/** What a re-wrap did: how many data keys, and how many of them were already wrapped by the new master key. */
export type Rewrapped = { keys: number; alreadyNew: number };

/**
 * Re-wraps every data key under the master key `next`, in one transaction (all or nothing): each
 * is unwrapped by one of `current` (or by `next` itself, so running it again after a success is
 * harmless), or the whole re-wrap fails (RewrapRefused) and nothing changes. The secrets are
 * not touched: they stay sealed by the same data keys. The table lock serializes it with key
 * rotations (createActiveKey), so no data key is made under the old master key meanwhile. Running
 * processes keep the data keys they already unwrapped; `within` runs in the same transaction
 * (the audit entry).
 */
export async function rewrapDataKeys(db: Db, current: readonly Buffer[], next: Buffer, within?: (tx: Transaction, r: Rewrapped) => Promise<void>): Promise<Rewrapped> {
  return db.transaction(async (tx) => {
    await tx.query("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE");
    const rows = (await tx.query<{ id: string; wrapped: string }>("SELECT id, wrapped FROM data_keys ORDER BY id")).rows;
    const r: Rewrapped = { keys: rows.length, alreadyNew: 0 };
    for (const row of rows) {
      const k = unwrapOrRefuse([...current, next], row.id, row.wrapped);
      if (k.by.equals(next)) r.alreadyNew++;
      await tx.query("UPDATE data_keys SET wrapped = $2 WHERE id = $1", [row.id, wrapKey(next, k)]);
    }
    await within?.(tx, r);
    return r;
  });
}

/** The refusal of a re-wrap: a data key none of the master keys unwraps; the transaction was rolled back, nothing changed. */
export class RewrapRefused extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = "RewrapRefused";
  }
}

function unwrapOrRefuse(masters: readonly Buffer[], id: string, wrapped: string): ReturnType<typeof unwrapMaster> {
  try {
    return unwrapMaster(masters, id, wrapped);
  } catch (err) {
    throw new RewrapRefused(err as Error);
  }
}

/** True when `key` unwraps every data key in the store (vacuously true for a store without any). */
export async function unwrapsAll(q: Queryable, key: Buffer): Promise<boolean> {
  const rows = (await q.query<{ id: string; wrapped: string }>("SELECT id, wrapped FROM data_keys")).rows;
  try {
    for (const row of rows) unwrapMaster([key], row.id, row.wrapped);
    return true;
  } catch {
    return false;
  }
}
