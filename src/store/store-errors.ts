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
  const tls = tlsProblem(err);
  if (tls) return tls.reason;
  if (REASONS[code]) return REASONS[code];
  if (code.startsWith("08")) return "connection failure";
  const msg = typeof e?.message === "string" ? e.message : "";
  if (/timeout expired|did not answer/i.test(msg)) return "it did not answer in time";
  if (/Connection terminated/i.test(msg)) return "connection closed";
  if (/is closed|closing/i.test(msg)) return "the store is closed";
  return "connection failure";
}

/** Node's codes for a server certificate its CA file does not vouch for. */
const UNVERIFIED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);

const URL_FIX = "DATABASE_URL needs sslmode=verify-full&sslrootcert=<the CA file that signed the database's certificate>";

/** A TLS disagreement between this host and PostgreSQL: what happened, in a few words, and the fix. */
function tlsProblem(err: unknown): { reason: string; fix: string } | undefined {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  const msg = typeof e?.message === "string" ? e.message : "";
  if (code === "28000" && /no encryption/.test(msg)) return { reason: "the database accepts only TLS connections", fix: URL_FIX };
  if (UNVERIFIED.has(code)) return { reason: "the database's TLS certificate is not signed by a trusted CA", fix: `${URL_FIX} (check the sslrootcert file is that CA)` };
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return { reason: "the database's TLS certificate is expired or not yet valid", fix: "renew the database's certificate (and check the clocks)" };
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return { reason: "the database's TLS certificate does not name the host in DATABASE_URL", fix: "connect by a name or address the certificate holds (sslmode=verify-full checks it)" };
  if (/does not support SSL/i.test(msg)) return { reason: "the database does not accept TLS", fix: "turn ssl on in postgresql.conf, or drop sslmode from DATABASE_URL only on a network you trust" };
  return undefined;
}

/**
 * The store refused this host's TLS (or its lack of it), as an error naming the fix in
 * DATABASE_URL (sslmode, sslrootcert); undefined when `err` is not a TLS problem.
 */
export function storeTlsRefused(err: unknown): AppError | undefined {
  const p = tlsProblem(err);
  return p && new AppError("UNAVAILABLE", `the store refused the connection: ${p.reason}; ${p.fix}`, { cause: err, reason: "STORE_UNAVAILABLE", retryAfterMs: STORE_RETRY_MS });
}

/** DATABASE_URL cannot even be read into a connection (a file it names, such as sslrootcert, is missing). */
export function storeUrlUnusable(err: unknown): AppError {
  const why = (err as { code?: unknown; path?: unknown }).code === "ENOENT" ? `${String((err as { path?: unknown }).path)} does not exist` : (err as Error).message;
  return new AppError("FAILED_PRECONDITION", `DATABASE_URL cannot be used: ${why}; sslrootcert (and sslcert, sslkey) must name files this host can read`, { cause: err });
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
