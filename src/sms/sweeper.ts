import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { changeTable, onExpiry } from "./activation-status.ts";
import { retryAllUnmatched } from "./codes.ts";
import { answerFor } from "./messages.ts";
import { settle } from "./settle.ts";
import type { SmsContext } from "./sms-context.ts";
import * as store from "./sms-store.ts";
import type { ActivationRow } from "./sms-store.ts";

/**
 * The sweeper: every interval it retries failed provider settlements, ends rentals past their
 * expiry, and retries held codes. One sweep runs at a time; stop() waits for it.
 */

const SWEEP_BATCH = 500;

/** What one sweep did. */
export type SweepResult = { expired: number; completed: number; settled: number; codes: number };

/** Ends one activation whose rental expired, if it is still open; answers the row as ended, or undefined. */
async function expire(ctx: SmsContext, id: string, t: Date): Promise<ActivationRow | undefined> {
  const r = await store.changeStatus(ctx.db, id, EXPIRY, "sweeper", t);
  return r?.changed ? r : undefined;
}

const EXPIRY = changeTable(onExpiry);

/** One sweep now. */
export async function sweepOnce(ctx: SmsContext): Promise<SweepResult> {
  const { db, log } = ctx;
  const out = { expired: 0, completed: 0, settled: 0, codes: 0 };
  // 1. Retry provider settlements that failed earlier (a refund is money: keep trying).
  for (const row of await store.unreleased(db, ctx.opts.releaseRetryMs, 100)) {
    try {
      await settle(ctx, row);
      out.settled++;
    } catch (err) {
      log.warn({ err: String(err), activation_id: row.id }, "could not settle an ended activation with its provider; retrying later");
    }
  }
  // 2. End rentals past their expiry: no code → FAILED (and refunded), code → COMPLETED (and finished).
  const t = ctx.now();
  for (const id of await store.expiredOpen(db, t, SWEEP_BATCH)) {
    const row = await expire(ctx, id, t);
    if (!row) continue;
    ctx.metrics.smsActivation(row.status === SMSStatus.SMS_STATUS_FAILED ? "expired" : "completed");
    if (row.status === SMSStatus.SMS_STATUS_FAILED) {
      out.expired++;
      ctx.waiters.wake(id, answerFor(row)!);
    } else out.completed++;
    try {
      await settle(ctx, row);
      out.settled++;
    } catch (err) {
      log.warn({ err: String(err), activation_id: id }, "could not settle an expired activation with its provider; retrying later");
    }
  }
  // 3. Codes that came before their rental was stored (or while the store was unreachable).
  out.codes = await retryAllUnmatched(ctx);
  return out;
}

/** Arms the next sweep, unless the domain is stopping. */
export function scheduleSweep(ctx: SmsContext): void {
  const { run } = ctx;
  if (run.stopped) return;
  run.timer = setTimeout(() => {
    run.sweeping = sweepOnce(ctx)
      .then((r) => {
        if (r.expired || r.completed) ctx.log.info(r, "swept SMS activations whose rental ended");
      })
      .catch((err: unknown) => ctx.log.warn({ err: String(err) }, "SMS sweep failed; retrying next tick"))
      .finally(() => {
        run.sweeping = undefined;
        scheduleSweep(ctx);
      });
  }, ctx.opts.sweepIntervalMs);
}
