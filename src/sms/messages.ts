import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { GetCodeResponseSchema, SMSActivationSchema, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { GetCodeResponse, SMSActivation } from "../gen/conveer/v1/sms_pb.js";
import { AppError, invalidArgument } from "../errors.ts";
import type { SmsProvider, SmsProviderErrorKind } from "./provider.ts";
import type { ActivationRow } from "./sms-store.ts";

const S = SMSStatus;

/** Maps a row to the API message. */
export function toActivation(row: ActivationRow): SMSActivation {
  return create(SMSActivationSchema, {
    id: row.id,
    phone: row.phone,
    service: row.service,
    country: row.country,
    status: row.status,
    expiresAt: timestampFromDate(row.expires_at),
    provider: row.provider,
    createdAt: timestampFromDate(row.created_at),
    price: row.price,
    refunded: row.refunded,
  });
}

/** GetCode's answer carrying a code. */
export const codeAnswer = (code: string) => create(GetCodeResponseSchema, { code, success: true });
/** GetCode's answer when no code will come (or none came in time). */
export const failedAnswer = (error: string) => create(GetCodeResponseSchema, { success: false, error });

/** What GetCode answers for a row, or undefined while the code is still awaited. */
export function answerFor(row: ActivationRow): GetCodeResponse | undefined {
  switch (row.status) {
    case S.SMS_STATUS_CODE_RECEIVED:
    case S.SMS_STATUS_COMPLETED:
      return codeAnswer(row.code);
    case S.SMS_STATUS_CANCELLED:
      return failedAnswer("activation was cancelled");
    case S.SMS_STATUS_FAILED:
      return failedAnswer(`activation expired at ${row.expires_at.toISOString()} without a code`);
    default:
      return undefined;
  }
}

/** The end of a wait as the call's error: cancelled by the client, or its deadline passed. */
export function abortError(reason: unknown): AppError {
  if (reason instanceof AppError) return reason;
  if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) return new AppError("DEADLINE_EXCEEDED", "the call's deadline passed while waiting for the code");
  return new AppError("CANCELLED", "the call was cancelled while waiting for the code");
}

/** The kind of an SmsProviderError (by shape, so a provider from another copy of the module counts), or undefined. */
export function providerKind(err: unknown): SmsProviderErrorKind | undefined {
  const e = err as { name?: unknown; kind?: unknown } | null;
  return e && e.name === "SmsProviderError" && typeof e.kind === "string" ? (e.kind as SmsProviderErrorKind) : undefined;
}

/** A provider failure as the status the client should see. */
export function providerError(p: SmsProvider, err: unknown, doing: string): AppError {
  if (err instanceof AppError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  switch (providerKind(err)) {
    case "unknown_service":
      return invalidArgument("service", `is not offered by SMS provider ${p.name}: ${msg}`);
    case "no_numbers":
      return new AppError("RESOURCE_EXHAUSTED", `SMS provider ${p.name} has no free number for this service and country (${msg}); retry later or try another country or operator`, { reason: "NO_FREE_NUMBER" });
    case "insufficient_balance":
      return new AppError("RESOURCE_EXHAUSTED", `the balance at SMS provider ${p.name} is too low to ${doing} (${msg}); top it up and retry`, { reason: "INSUFFICIENT_BALANCE" });
    case "not_found":
      return new AppError("NOT_FOUND", `SMS provider ${p.name} does not know this rental: ${msg}`);
    default:
      return new AppError("UNAVAILABLE", `SMS provider ${p.name} could not ${doing}: ${msg}; retry later`, { cause: err });
  }
}
