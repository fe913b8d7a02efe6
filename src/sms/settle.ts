import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { AppError } from "../errors.ts";
import { providerError, providerKind } from "./messages.ts";
import type { SmsContext } from "./sms-context.ts";
import * as store from "./sms-store.ts";
import type { ActivationRow } from "./sms-store.ts";

/**
 * Settles the provider side of an ended activation: cancel (refunds when no code came) for
 * CANCELLED and FAILED, finish for COMPLETED. Answers whether a refund is confirmed; throws
 * (and leaves the row for the sweeper's retry) when the provider cannot be reached.
 */
export async function settle(ctx: SmsContext, row: ActivationRow): Promise<boolean> {
  const p = ctx.byName.get(row.provider);
  if (!p) throw new AppError("UNAVAILABLE", `SMS provider ${JSON.stringify(row.provider)} of activation ${row.id} is not configured in this process`);
  const completed = row.status === SMSStatus.SMS_STATUS_COMPLETED;
  let refunded = false;
  try {
    if (completed) await p.finish(row.provider_ref);
    else refunded = (await p.cancel(row.provider_ref)).refunded;
  } catch (err) {
    // The provider no longer knows the rental: it has ended it itself; nothing is left to settle.
    if (providerKind(err) !== "not_found") {
      await store.touch(ctx.db, row.id).catch(() => {});
      throw providerError(p, err, completed ? "finish the rental" : "cancel the rental");
    }
  }
  const updated = await store.markReleased(ctx.db, row.id, refunded);
  return updated?.refunded ?? refunded;
}
