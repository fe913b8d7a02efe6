import type { Transaction } from "./db.ts";

/**
 * Runs fn inside a savepoint of tx, for batches where each item succeeds or fails on its own:
 * when fn throws, only its work is rolled back and the error rethrown; the transaction goes on.
 */
export async function inSavepoint<T>(tx: Transaction, fn: () => Promise<T>): Promise<T> {
  await tx.query("SAVEPOINT item");
  try {
    const out = await fn();
    await tx.query("RELEASE SAVEPOINT item");
    return out;
  } catch (err) {
    await tx.query("ROLLBACK TO SAVEPOINT item");
    throw err;
  }
}
