import { AppError } from "../errors.ts";

/**
 * The errors the store itself raises, each with the status a client should see: an unreachable or
 * silent store is UNAVAILABLE (retryable), a busy pool is RESOURCE_EXHAUSTED, a wait that outlives
 * the caller's deadline is DEADLINE_EXCEEDED. Never INTERNAL: none of them is a bug.
 */

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection reset",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host name not found",
  EAI_AGAIN: "host name lookup failed",
  "57P01": "connection terminated by the server",
  "57P02": "the server crashed",
  "57P03": "the server is starting up or shutting down",
  "3D000": "the database does not exist",
  "28P01": "authentication failed",
  "28000": "authentication failed",
  "53300": "too many connections",
};

/**
 * Why the store failed, in a few words fit for a client or /healthz: never the driver's own
 * message, which may name the database's host, port, user or database (the full error is logged).
 */
export function storeFailureReason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  if (REASONS[code]) return REASONS[code];
  if (code.startsWith("08")) return "connection failure";
  const msg = typeof e?.message === "string" ? e.message : "";
  if (/timeout expired|did not answer/i.test(msg)) return "it did not answer in time";
  if (/Connection terminated/i.test(msg)) return "connection closed";
  if (/is closed|closing/i.test(msg)) return "the store is closed";
  return "connection failure";
}

/** The backoff a client is asked to wait (RetryInfo) after the store failed it: the health probe's period, in which an outage is noticed or cleared. */
export const STORE_RETRY_MS = 1000;

/** The store cannot be reached (connection refused, reset, terminated) or is known to be down. */
export function storeUnreachable(reason: string, cause?: unknown): AppError {
  return new AppError("UNAVAILABLE", `the store is unreachable (${reason}); retry later`, { cause, reason: "STORE_UNAVAILABLE", retryAfterMs: STORE_RETRY_MS });
}

/** A query or a connection attempt got no answer in time. */
export function storeSilent(ms: number, what = "did not answer"): AppError {
  return new AppError("UNAVAILABLE", `the store ${what} in ${ms} ms; retry later`, { reason: "STORE_UNAVAILABLE", retryAfterMs: STORE_RETRY_MS });
}

/** Every pooled connection stayed busy for as long as the caller could wait. */
export function poolBusy(size: number, waitedMs: number): AppError {
  return new AppError(
    "RESOURCE_EXHAUSTED",
    `all ${size} store connections stayed busy for ${waitedMs} ms; retry later, or raise CONVEER_DB_POOL_SIZE`,
    { retryAfterMs: STORE_RETRY_MS },
  );
}

/** The caller's deadline passed while it waited for a store connection. */
export function poolDeadline(waitedMs: number): AppError {
  return new AppError("DEADLINE_EXCEEDED", `the call's deadline passed after ${waitedMs} ms waiting for a store connection (the pool is busy)`);
}
