import { AppError } from "../errors.ts";

/**
 * The errors the store itself raises, each with the status a client should see: an unreachable or
 * silent store is UNAVAILABLE (retryable), a busy pool is RESOURCE_EXHAUSTED, a wait that outlives
 * the caller's deadline is DEADLINE_EXCEEDED. Never INTERNAL: none of them is a bug.
 */

/** The store cannot be reached (connection refused, reset, terminated) or is known to be down. */
export function storeUnreachable(reason: string, cause?: unknown): AppError {
  return new AppError("UNAVAILABLE", `the store is unreachable (${reason}); retry later`, { cause });
}

/** A query or a connection attempt got no answer in time. */
export function storeSilent(ms: number, what = "did not answer"): AppError {
  return new AppError("UNAVAILABLE", `the store ${what} in ${ms} ms; retry later`);
}

/** Every pooled connection stayed busy for as long as the caller could wait. */
export function poolBusy(size: number, waitedMs: number): AppError {
  return new AppError(
    "RESOURCE_EXHAUSTED",
    `all ${size} store connections stayed busy for ${waitedMs} ms; retry later, or raise CONVEER_DB_POOL_SIZE`,
  );
}

/** The caller's deadline passed while it waited for a store connection. */
export function poolDeadline(waitedMs: number): AppError {
  return new AppError("DEADLINE_EXCEEDED", `the call's deadline passed after ${waitedMs} ms waiting for a store connection (the pool is busy)`);
}
