import { status as GrpcStatus } from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema, anyPack } from "@bufbuild/protobuf/wkt";
import { StatusSchema as RpcStatusSchema } from "../gen/google/rpc/status_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { AppError } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";
import { PgError, isConnectionError, isDataCorruption, sqlState } from "../store/pg-errors.ts";
import { storeFailureReason, storeUnreachable } from "../store/store-errors.ts";

/**
 * A status to send: the code, the message the client sees, whether it was a bug, and the
 * google.rpc details that go with it (an AppError's, or a peer's passed through), in Connect's
 * shape so the HTTP transport hands them to a ConnectError as they are.
 */
export type StatusOut = { code: GrpcStatus; message: string; internal: boolean; details?: ConnectError["details"] };

/**
 * The most bytes of encoded google.rpc.Status sent in grpc-status-details-bin; past it the details
 * are left out (the code and message still go). Details are small; this bounds the trailer.
 */
export const MAX_STATUS_DETAILS_BYTES = 4096;

/**
 * The grpc-status-details-bin value for a status: google.rpc.Status with the same code and
 * message and each detail packed in an Any. Undefined when there are no details (or too many bytes).
 */
export function statusDetailsBin(s: StatusOut): Buffer | undefined {
  if (!s.details?.length) return undefined;
  const details = s.details.map((d) =>
    "desc" in d ? anyPack(d.desc, create(d.desc, d.value)) : create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }),
  );
  const bin = toBinary(RpcStatusSchema, create(RpcStatusSchema, { code: s.code, message: s.message, details }));
  return bin.byteLength <= MAX_STATUS_DETAILS_BYTES ? Buffer.from(bin) : undefined;
}

/**
 * The longest status message sent, in UTF-8 bytes. The message travels in the grpc-message
 * trailer (percent-encoded: up to 3 × this), and HTTP/2 peers refuse header blocks past their
 * limit (Node sends none over 64 KB, and ends the stream with RST_STREAM instead; gRPC C-core
 * clients accept 8-16 KB of metadata by default), so no error may ever grow one that large.
 */
export const MAX_STATUS_MESSAGE_BYTES = 1024;

/**
 * The one place errors become gRPC status codes. AppError keeps its code; an unreachable store
 * is UNAVAILABLE (retryable); a unique violation the domain did not catch is ALREADY_EXISTS;
 * anything else is a bug: INTERNAL, with the cause logged and never sent to the client. The
 * message is capped at MAX_STATUS_MESSAGE_BYTES, a backstop behind the request check and `quote`.
 */
export function toStatus(err: unknown): StatusOut {
  const s = classify(err);
  return s.message.length * 3 <= MAX_STATUS_MESSAGE_BYTES ? s : { ...s, message: capMessage(s.message) };
}

const TRUNCATED = "… (message truncated)";

/** `message` cut to at most MAX_STATUS_MESSAGE_BYTES of UTF-8 (with a note when cut), never inside a character. */
export function capMessage(message: string): string {
  if (Buffer.byteLength(message) <= MAX_STATUS_MESSAGE_BYTES) return message;
  const budget = MAX_STATUS_MESSAGE_BYTES - Buffer.byteLength(TRUNCATED);
  let bytes = 0;
  let end = 0;
  for (const ch of message) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > budget) break;
    bytes += n;
    end += ch.length;
  }
  return message.slice(0, end) + TRUNCATED;
}

function classify(err: unknown): StatusOut {
  if (err instanceof AppError) return { code: GrpcStatus[err.code as ErrorCode], message: err.message, internal: false, details: [...err.details] };
  if (err instanceof ConnectError) {
    // A peer service's answer (in-process or over gRPC): the caller's own mistakes keep their
    // code; anything else means the peer could not answer, which is retryable for our caller.
    if (PEER_PASS_THROUGH.has(err.code)) return { code: err.code as number as GrpcStatus, message: err.rawMessage, internal: false, details: err.details };
    // An UNAVAILABLE peer keeps its details: ErrorInfo says whose outage it is (STORE_UNAVAILABLE,
    // PLATFORM_UNAVAILABLE), RetryInfo when to come back.
    const details = err.code === Code.Unavailable ? err.details : undefined;
    return { code: GrpcStatus.UNAVAILABLE, message: `a peer service could not answer (${Code[err.code]}: ${err.rawMessage}); retry later`, internal: false, details };
  }
  // A driver error that reached here raw (not through the store's own translation): the same answer.
  if (isConnectionError(err)) return toStatus(storeUnreachable(storeFailureReason(err), err));
  if (sqlState(err) === PgError.uniqueViolation) {
    return { code: GrpcStatus.ALREADY_EXISTS, message: "already exists", internal: false };
  }
  // untranslatable_character / character_not_in_repertoire: input text the store cannot hold (NUL).
  // The transport refuses NUL up front; this is the backstop for text that reaches SQL another way.
  if (sqlState(err) === "22P05" || sqlState(err) === "22021") {
    return { code: GrpcStatus.INVALID_ARGUMENT, message: "a text value holds a character the store cannot keep (such as NUL, U+0000)", internal: false };
  }
  // A damaged page: not retryable (UNAVAILABLE would invite retries that cannot help). Logged with the cause.
  if (isDataCorruption(err)) {
    return { code: GrpcStatus.DATA_LOSS, message: "the store's data is damaged (a page failed its check); the operator must restore the store from a backup", internal: true };
  }
  const pgliteClosed = err instanceof Error && /PGlite is closed/i.test(err.message);
  if (pgliteClosed) return { code: GrpcStatus.UNAVAILABLE, message: "the store is closed; retry later", internal: false };
  return { code: GrpcStatus.INTERNAL, message: "internal error", internal: true };
}

const PEER_PASS_THROUGH = new Set<Code>([
  Code.NotFound,
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.ResourceExhausted,
  Code.AlreadyExists,
  Code.Canceled,
  Code.DeadlineExceeded,
]);

/** The enum name of a gRPC status code ("NOT_FOUND"). */
export function statusName(code: number): string {
  return (GrpcStatus as unknown as Record<number, string>)[code] ?? String(code);
}
