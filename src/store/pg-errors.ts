/** PostgreSQL error codes the code base reacts to, by name (SQLSTATE values). */
export const PgError = {
  uniqueViolation: "23505",
  foreignKeyViolation: "23503",
  checkViolation: "23514",
  serializationFailure: "40001",
  deadlockDetected: "40P01",
  adminShutdown: "57P01",
  crashShutdown: "57P02",
  cannotConnectNow: "57P03",
  tooManyConnections: "53300",
  invalidTextRepresentation: "22P02",
  dataCorrupted: "XX001",
  indexCorrupted: "XX002",
} as const;

/** True when the store read a damaged page (failed checksum, zeroed index page, file cut short): retrying cannot help. */
export function isDataCorruption(err: unknown): boolean {
  const s = sqlState(err);
  return s === PgError.dataCorrupted || s === PgError.indexCorrupted;
}

const connectionErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH"]);

/** The SQLSTATE of a driver error, or "". */
export function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : "";
}

/** True when the error means the database is unreachable or going away: the call may be retried later. */
export function isConnectionError(err: unknown): boolean {
  if (err === null || typeof err !== "object") return false;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  if (connectionErrnos.has(code)) return true;
  if (code.startsWith("08") || code === PgError.adminShutdown || code === PgError.crashShutdown || code === PgError.cannotConnectNow || code === PgError.tooManyConnections) return true;
  const msg = typeof e.message === "string" ? e.message : "";
  return /Connection terminated|connection timeout|timeout expired|Client has encountered a connection error|timeout exceeded when trying to connect|Cannot use a pool after calling end/i.test(msg);
}

/** True for errors that a retry of the whole transaction resolves (serialization failure, deadlock). */
export function isRetryable(err: unknown): boolean {
  const s = sqlState(err);
  return s === PgError.serializationFailure || s === PgError.deadlockDetected;
}
