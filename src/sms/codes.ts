import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { answerFor, codeAnswer } from "./messages.ts";
import type { DeliveredSms, SmsProvider } from "./provider.ts";
import type { SmsContext } from "./sms-context.ts";
import * as store from "./sms-store.ts";

/**
 * How codes reach waiting GetCode calls: a provider's delivery is recorded in the store and wakes
 * local waiters; a NOTIFY from any replica makes local waiters re-read; codes for rentals not yet
 * stored are held and retried.
 */

const MAX_UNMATCHED = 10_000;
/** How many recorded codes a process keeps for GetCode calls that come after their code. */
const RECENT_CODES = 10_000;

const unmatchedKey = (provider: string, ref: string) => `${provider}\u0000${ref}`;

/** Records a delivered code on its activation (when still open), notifies every replica, wakes local waiters. */
async function recordCode(ctx: SmsContext, p: SmsProvider, m: DeliveredSms): Promise<"recorded" | "ignored" | "unmatched"> {
  const out = await store.recordCode(ctx.db, p.name, m.ref, m.code, `provider:${p.name}`);
  if (!out) return "unmatched";
  if (out.recorded) {
    ctx.recentCodes.set(out.id, { code: m.code, provider: p.name, ref: m.ref, finished: false });
    if (ctx.recentCodes.size > RECENT_CODES) ctx.recentCodes.delete(ctx.recentCodes.keys().next().value!);
    ctx.metrics.smsActivation("code_received");
    ctx.waiters.wake(out.id, codeAnswer(m.code));
    return "recorded";
  }
  // A code already recorded (another replica heard the same message) is routine; a code after a cancel or expiry is worth a line.
  const already = out.status === SMSStatus.SMS_STATUS_CODE_RECEIVED || out.status === SMSStatus.SMS_STATUS_COMPLETED;
  ctx.log[already ? "debug" : "info"]({ activation_id: out.id, status: SMSStatus[out.status], provider: p.name }, "an SMS code arrived for an activation that no longer waits for one; ignored");
  return "ignored";
}

function remember(ctx: SmsContext, p: SmsProvider, m: DeliveredSms): void {
  const { unmatched } = ctx;
  const key = unmatchedKey(p.name, m.ref);
  if (!unmatched.has(key) && unmatched.size >= MAX_UNMATCHED) {
    const oldest = unmatched.keys().next().value!;
    unmatched.delete(oldest);
    ctx.log.warn({ provider: p.name }, "too many SMS codes for unknown rentals are held; dropped the oldest");
  }
  unmatched.set(key, { provider: p, m, since: unmatched.get(key)?.since ?? Date.now() });
}

function track<T>(ctx: SmsContext, p: Promise<T>): Promise<T> {
  ctx.inflight.add(p);
  void p.finally(() => ctx.inflight.delete(p)).catch(() => {});
  return p;
}

/** The provider subscription's listener: never throws, never blocks the provider. */
export function onDelivered(ctx: SmsContext, p: SmsProvider, m: DeliveredSms): void {
  if (!m.code) {
    ctx.log.warn({ provider: p.name, ref: m.ref }, "an SMS arrived without a code the provider could extract; still waiting for one");
    return;
  }
  track(
    ctx,
    recordCode(ctx, p, m).then(
      (kind) => {
        if (kind === "unmatched") remember(ctx, p, m);
      },
      (err: unknown) => {
        ctx.log.warn({ err: String(err), provider: p.name, ref: m.ref }, "could not record an SMS code; the sweeper retries it");
        remember(ctx, p, m);
      },
    ),
  );
}

/** Re-reads an activation once and wakes whoever waits on it here; `failed` is the log line when the read fails. */
function reread(ctx: SmsContext, id: string, failed: string): void {
  ctx.loader.load(id).then(
    (row) => {
      const answer = row && answerFor(row);
      if (answer) ctx.waiters.wake(id, answer);
    },
    (err: unknown) => ctx.log.warn({ err: String(err), activation_id: id }, failed),
  );
}

/** A NOTIFY from any replica: re-read the activation once and wake whoever waits on it here. */
export function onNotify(ctx: SmsContext, id: string): void {
  if (!ctx.waiters.has(id)) return;
  reread(ctx, id, "could not read an activation after its notification; its waiters re-check at their deadline");
}

/** Re-reads an activation after its waiter is registered: closes the race with a code recorded between the first read and the registration. */
export function recheck(ctx: SmsContext, id: string): void {
  reread(ctx, id, "could not re-check an activation after registering its waiter; waiting on notifications");
}

/** Retries a code that arrived before its activation was stored. */
export async function retryUnmatched(ctx: SmsContext, provider: string, ref: string): Promise<void> {
  const key = unmatchedKey(provider, ref);
  const e = ctx.unmatched.get(key);
  if (!e) return;
  ctx.unmatched.delete(key);
  try {
    if ((await recordCode(ctx, e.provider, e.m)) === "unmatched") ctx.unmatched.set(key, e);
  } catch (err) {
    ctx.unmatched.set(key, e);
    ctx.log.warn({ err: String(err), provider, ref }, "could not record an SMS code; the sweeper retries it");
  }
}

/** The sweeper's pass over held codes: drops those past their time to live, retries the rest; answers how many were recorded. */
export async function retryAllUnmatched(ctx: SmsContext): Promise<number> {
  let recorded = 0;
  for (const [key, e] of [...ctx.unmatched]) {
    if (Date.now() - e.since > ctx.opts.unmatchedTtlMs) {
      ctx.unmatched.delete(key);
      ctx.log.warn({ provider: e.provider.name, ref: e.m.ref }, "dropped an SMS code whose rental never appeared in the store");
      continue;
    }
    const before = ctx.unmatched.size;
    await retryUnmatched(ctx, e.provider.name, e.m.ref);
    if (ctx.unmatched.size < before) recorded++;
  }
  return recorded;
}
