import type { GetCodeResponse } from "../gen/conveer/v1/sms_pb.js";
import { AppError, invalidArgument, notFound } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import type { WaitResult } from "./code-waiters.ts";
import { recheck } from "./codes.ts";
import { abortError, answerFor, codeAnswer, failedAnswer } from "./messages.ts";
import type { SmsContext } from "./sms-context.ts";

/** How the caller of GetCode is bounded: its cancellation and the time left before its deadline. */
export type CallBounds = { signal?: AbortSignal; timeoutMs?: number };

/** GetCode's timeout_seconds: 0 means the default. */
export const DEFAULT_CODE_TIMEOUT_SECONDS = 120;
/** The longest GetCode wait a caller may ask for. */
export const MAX_CODE_TIMEOUT_SECONDS = 600;

/** A waiter past its activation's expiry keeps waiting this long for a code the provider sent at the last moment. */
const EXPIRY_GRACE_MS = 2000;
/** The answer goes out this much before the caller's deadline, so the caller gets success=false rather than DEADLINE_EXCEEDED. */
const DEADLINE_MARGIN_MS = 200;

/**
 * Waits for an activation's code: answers at once when it is there (or the activation ended),
 * else when it arrives, or success=false when timeout_seconds, the activation's expiry or the
 * caller's deadline comes first. The caller's cancellation ends the wait with CANCELLED.
 */
export async function getCode(ctx: SmsContext, activationId: string, timeoutSeconds: number, call: CallBounds = {}): Promise<GetCodeResponse> {
  checkId(activationId, "activation_id");
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0 || timeoutSeconds > MAX_CODE_TIMEOUT_SECONDS) {
    throw invalidArgument("timeout_seconds", `must be between 1 and ${MAX_CODE_TIMEOUT_SECONDS} (0 for the default, ${DEFAULT_CODE_TIMEOUT_SECONDS}), got ${timeoutSeconds}`);
  }
  const seconds = timeoutSeconds || DEFAULT_CODE_TIMEOUT_SECONDS;
  const started = Date.now();
  if (call.signal?.aborted) throw abortError(call.signal.reason);
  // The code was recorded here: the answer a read would give (a registration asks right after it).
  const recorded = ctx.recentCodes.get(activationId);
  if (recorded !== undefined) return codeAnswer(recorded.code);
  const row = await ctx.loader.load(activationId);
  if (!row) throw notFound("activation", activationId);
  const ready = answerFor(row);
  if (ready) return ready;

  let until = started + seconds * 1000;
  let why = "timeout" as "timeout" | "deadline" | "expiry";
  if (call.timeoutMs !== undefined) {
    const at = started + call.timeoutMs - Math.min(DEADLINE_MARGIN_MS, call.timeoutMs / 10);
    if (at < until) {
      until = at;
      why = "deadline";
    }
  }
  const expiryAt = Date.now() + (row.expires_at.getTime() - ctx.now().getTime()) + EXPIRY_GRACE_MS;
  if (expiryAt < until) {
    until = expiryAt;
    why = "expiry";
  }

  // The waiting call holds only the registry's waiter and this small continuation: getCode's
  // own frame (and the row it read) is gone while it waits.
  const waiting = ctx.waiters.wait(activationId, until, call.signal);
  recheck(ctx, activationId);
  const expiresAt = row.expires_at;
  return waiting.then((r) => afterWait(ctx, r, activationId, why, seconds, started, expiresAt));
}

/** What GetCode answers once its wait ends. */
async function afterWait(
  ctx: SmsContext,
  r: WaitResult<GetCodeResponse>,
  id: string,
  why: "timeout" | "deadline" | "expiry",
  seconds: number,
  started: number,
  expiresAt: Date,
): Promise<GetCodeResponse> {
  switch (r.kind) {
    case "woken":
      return r.value;
    case "aborted":
      throw abortError(r.reason);
    case "closed":
      throw new AppError("UNAVAILABLE", "the SMS service is stopping; call GetCode again");
    case "deadline": {
      // One last look: a notification may have been lost while the store connection was down.
      const last = await ctx.loader.load(id);
      const answer = last && answerFor(last);
      if (answer) return answer;
      const waited = ((Date.now() - started) / 1000).toFixed(1);
      if (why === "expiry") return failedAnswer(`timed out: the activation expired at ${expiresAt.toISOString()} without a code`);
      if (why === "deadline") return failedAnswer(`timed out at the call's deadline after ${waited}s waiting for the code; call GetCode again with a longer deadline`);
      return failedAnswer(`timed out after ${seconds}s waiting for the code; call GetCode again to keep waiting`);
    }
  }
}
