/**
 * The domain's one error class. Domain code throws `AppError` with a gRPC status name; the
 * transport (src/server/status.ts) is the one place that turns errors into status codes.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** The gRPC status names the domain may raise. */
export type ErrorCode =
  | "CANCELLED"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "UNAUTHENTICATED";

/** An error with a status the client is meant to see; the message says what was wrong and how to fix it. */
export class AppError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "AppError";
  }
}

/** INVALID_ARGUMENT naming the field: `invalidArgument("page_size", "must be between 1 and 1000, got 5000")`. */
export function invalidArgument(field: string, problem: string): AppError {
  return new AppError("INVALID_ARGUMENT", `${field} ${problem}`);
}

/** NOT_FOUND for an id: `notFound("account", id)`. */
export function notFound(what: string, id: string): AppError {
  return new AppError("NOT_FOUND", `${what} ${quote(id)} not found`);
}

/** How many characters of a value `quote` shows. */
export const QUOTE_CHARS = 64;

/**
 * A value for an error message: JSON of at most its first QUOTE_CHARS characters, and when it is
 * longer, how long it was: `"aaaa"… (1048576 chars)`. Messages quote user input only through
 * this, so no message repeats a large input (a status message travels in an HTTP/2 header).
 * A value that is not a string is shown as JSON too (a number as 5, an object as {…}).
 */
export function quote(v: unknown): string {
  if (typeof v === "string") return v.length <= QUOTE_CHARS ? JSON.stringify(v) : `${JSON.stringify(prefix(v))}… (${v.length} chars)`;
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v); // a bigint, a cycle
  }
  return s.length <= QUOTE_CHARS ? s : `${prefix(s)}… (${s.length} chars)`;
}

// The first QUOTE_CHARS characters, never cutting a surrogate pair in half.
function prefix(s: string): string {
  return s.slice(0, /[\uD800-\uDBFF]/.test(s[QUOTE_CHARS - 1]) ? QUOTE_CHARS - 1 : QUOTE_CHARS);
}

/** The gRPC status name of an error from a peer (an in-process AppError or a ConnectError from a remote one). */
export function codeOf(err: unknown): string {
  if (err instanceof AppError) return err.code;
  if (err instanceof ConnectError) return Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  return "UNKNOWN";
}

/** The message of a peer error without the code prefix ConnectError adds. */
export function messageOf(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}
