/**
 * The domain's one error class. Domain code throws `AppError` with a gRPC status name; the
 * transport (src/server/status.ts) is the one place that turns errors into status codes.
 */

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
  return new AppError("NOT_FOUND", `${what} ${JSON.stringify(id)} not found`);
}
