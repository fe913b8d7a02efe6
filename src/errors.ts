/**
 * The domain's one error class. Domain code throws `AppError` with a gRPC status name; the
 * transport (src/server/status.ts) is the one place that turns errors into status codes.
 * An AppError carries google.rpc error details too (BadRequest, ResourceInfo, ErrorInfo,
 * RetryInfo), which every transport sends: in grpc-status-details-bin on the gRPC ports, as
 * Connect error details on the HTTP port.
 */
import { create } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

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

/** The ErrorInfo domain of every reason Conveer sends. */
export const ERROR_DOMAIN = "conveer";

/**
 * The stable machine-readable reasons (google.rpc.ErrorInfo.reason, domain `conveer`) a client
 * can branch on; the message beside them is for people and may change.
 */
export type ErrorReason =
  | "NO_FREE_PROXY" // RESOURCE_EXHAUSTED: the pool has no free healthy proxy; add proxies
  | "NO_FREE_NUMBER" // RESOURCE_EXHAUSTED: the SMS provider has no number for the service and country
  | "INSUFFICIENT_BALANCE" // RESOURCE_EXHAUSTED: the SMS provider balance is too low
  | "RATE_LIMITED" // RESOURCE_EXHAUSTED: the platform rate-limited the account; RetryInfo says when
  | "ACCOUNT_BANNED" // FAILED_PRECONDITION: the platform banned the account
  | "ACCOUNT_SUSPENDED" // FAILED_PRECONDITION: the platform suspended the account
  | "ACCOUNT_NOT_ACTIVE" // FAILED_PRECONDITION: the account's status does not allow the operation
  | "INVALID_CREDENTIALS" // FAILED_PRECONDITION: the platform refused the stored login or password
  | "NO_DRIVER" // FAILED_PRECONDITION: no driver is bound for the platform
  | "NOT_EMBEDDED" // FAILED_PRECONDITION: BackupStore on PostgreSQL; back it up with pg_dump
  | "PLATFORM_UNAVAILABLE" // UNAVAILABLE: the platform failed or is down; retry
  | "STORE_UNAVAILABLE"; // UNAVAILABLE: the store is unreachable or busy; retry

/** One google.rpc error detail: a message type and its value (Connect's outgoing detail shape). */
export type ErrorDetail = { desc: DescMessage; value: MessageInitShape<DescMessage> };

/** What an AppError may carry besides code and message. */
export type AppErrorOptions = {
  cause?: unknown;
  /** ErrorInfo: a stable reason (domain `conveer`) and its metadata. */
  reason?: ErrorReason;
  metadata?: Record<string, string>;
  /** RetryInfo: how long to wait before retrying. */
  retryAfterMs?: number;
  /** Any other details (BadRequest, ResourceInfo, …). */
  details?: ErrorDetail[];
};

/** An error with a status the client is meant to see; the message says what was wrong and how to fix it. */
export class AppError extends Error {
  readonly code: ErrorCode;
  /** google.rpc details sent with the status (grpc-status-details-bin, Connect error details). */
  readonly details: readonly ErrorDetail[];
  /** The ErrorInfo reason, when there is one. */
  readonly reason: ErrorReason | undefined;
  constructor(code: ErrorCode, message: string, options?: AppErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = "AppError";
    this.reason = options?.reason;
    this.details = detailsOf(options);
  }
}

function detailsOf(o: AppErrorOptions | undefined): ErrorDetail[] {
  const out: ErrorDetail[] = [...(o?.details ?? [])];
  if (o?.reason) out.push(detail(ErrorInfoSchema, { reason: o.reason, domain: ERROR_DOMAIN, metadata: o.metadata ?? {} }));
  if (o?.retryAfterMs !== undefined) out.push(retryInfo(o.retryAfterMs));
  return out;
}

/** A typed detail: `detail(ResourceInfoSchema, { resourceType: "account" })`. */
export function detail<D extends DescMessage>(desc: D, value: MessageInitShape<D>): ErrorDetail {
  return { desc, value } as ErrorDetail;
}

/** RetryInfo asking the client to wait `ms` (whole milliseconds) before retrying. */
export function retryInfo(ms: number): ErrorDetail {
  const whole = Math.max(0, Math.ceil(ms));
  return detail(RetryInfoSchema, { retryDelay: { seconds: BigInt(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 } });
}

/** INVALID_ARGUMENT naming the field: `invalidArgument("page_size", "must be between 1 and 1000, got 5000")`; a BadRequest field violation says the same. */
export function invalidArgument(field: string, problem: string): AppError {
  return new AppError("INVALID_ARGUMENT", `${field} ${problem}`, { details: [badRequest(field, problem)] });
}

/** A BadRequest detail with one field violation. */
export function badRequest(field: string, description: string): ErrorDetail {
  return detail(BadRequestSchema, { fieldViolations: [{ field, description }] });
}

/** NOT_FOUND for an id: `notFound("account", id)`, with ResourceInfo naming the type and id. */
export function notFound(what: string, id: string): AppError {
  const message = `${what} ${quote(id)} not found`;
  return new AppError("NOT_FOUND", message, { details: [resourceInfo(what, id, message)] });
}

/** A ResourceInfo detail: the kind of resource, its name or id (at most 256 characters of it), and what about it. */
export function resourceInfo(resourceType: string, resourceName: string, description: string, owner = ""): ErrorDetail {
  return detail(ResourceInfoSchema, { resourceType, resourceName: resourceName.slice(0, 256), owner, description });
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

/**
 * The google.rpc details of one type an error carries: an AppError's own, or a peer's ConnectError's
 * (decoded from grpc-status-details-bin or Connect error details, or as an in-process call passed them).
 */
export function findDetails<D extends DescMessage>(err: unknown, desc: D): MessageShape<D>[] {
  if (err instanceof ConnectError) return err.findDetails(desc);
  if (err instanceof AppError) return err.details.filter((d) => d.desc.typeName === desc.typeName).map((d) => create(desc, d.value as MessageInitShape<D>));
  return [];
}

/** The ErrorInfo reason (domain `conveer`) of an error, or undefined when it carries none. */
export function reasonOf(err: unknown): string | undefined {
  return findDetails(err, ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN)?.reason || undefined;
}

/** The RetryInfo delay of an error in milliseconds, or undefined when it carries none. */
export function retryDelayOf(err: unknown): number | undefined {
  const d = findDetails(err, RetryInfoSchema)[0]?.retryDelay;
  return d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000) : undefined;
}
