import { create } from "@bufbuild/protobuf";
import { CancelActivationResponseSchema, GetBalanceResponseSchema, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { CancelActivationResponse, GetBalanceResponse, SMSActivation } from "../gen/conveer/v1/sms_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { AppError, invalidArgument, notFound, quote } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { changeTable, onCancel } from "./activation-status.ts";
import { retryUnmatched } from "./codes.ts";
import { answerFor, providerError, toActivation } from "./messages.ts";
import type { Rental } from "./provider.ts";
import { settle } from "./settle.ts";
import type { SmsContext } from "./sms-context.ts";
import * as store from "./sms-store.ts";
import type { ActivationHistoryRow, ActivationRow } from "./sms-store.ts";

/** The client's side of a rental: rent a number, cancel it, read it, and the provider's balance. */

const S = SMSStatus;
const CANCEL = changeTable(onCancel);
const COUNTRY = /^[a-z]{2}$/;
const OPERATOR = /^[A-Za-z0-9_.-]{0,64}$/;

/** Rents a number from the default provider for a service; the provider takes the price from its balance. */
export async function getNumber(ctx: SmsContext, req: { service: string; country: string; operator: string }, author = ""): Promise<SMSActivation> {
  if (!req.service) throw invalidArgument("service", `is required: one of ${PLATFORMS.join(", ")}`);
  if (!isPlatform(req.service)) throw invalidArgument("service", `must be one of ${PLATFORMS.join(", ")}, got ${quote(req.service)}`);
  const country = (req.country.trim() || "ru").toLowerCase();
  if (!COUNTRY.test(country)) throw invalidArgument("country", `must be an ISO 3166 alpha-2 code like ru (the default), got ${quote(req.country)}`);
  const operator = req.operator.trim();
  if (!OPERATOR.test(operator)) throw invalidArgument("operator", `must be at most 64 letters, digits, '.', '_' or '-', got ${quote(req.operator)}`);
  const p = ctx.defaultProvider;
  let rental: Rental;
  try {
    rental = await p.rent({ service: req.service, country, operator });
  } catch (err) {
    ctx.metrics.smsActivation("rent_failed");
    throw providerError(p, err, "rent a number");
  }
  let row: ActivationRow;
  try {
    row = await store.insertActivation(
        ctx.db,
        {
          id: ctx.newId(),
          provider: p.name,
          provider_ref: rental.ref,
          phone: rental.phone,
          service: req.service,
          country,
          operator,
          price: Number(rental.price),
          status: S.SMS_STATUS_WAITING_CODE,
          expires_at: rental.expiresAt,
        },
        `rented from ${p.name}`,
        author,
      );
  } catch (err) {
    // The number is paid for but not recorded: hand it back rather than lose the money.
    await p.cancel(rental.ref).catch((e: unknown) => ctx.log.error({ err: String(e), provider: p.name, ref: rental.ref }, "could not hand back a rented number that failed to be stored"));
    throw err;
  }
  ctx.metrics.smsActivation("rented");
  await retryUnmatched(ctx, p.name, rental.ref);
  return toActivation(row);
}

/** Cancels an activation still waiting for its code and refunds it; a cancelled activation never yields a code. */
export async function cancel(ctx: SmsContext, activationId: string, author = ""): Promise<CancelActivationResponse> {
  checkId(activationId, "activation_id");
  // After the code, ending the activation completes it (the number is handed back, no refund).
  // When this process recorded the code, the rental is finished at the provider first, so the
  // completion and the release are one statement. (Stopped after the finish, before the
  // statement: the activation keeps its code until its expiry, when the sweeper completes it and
  // finishes a rental already finished, which changes nothing.) Else, or when the finish fails,
  // the completion is recorded first and the rental settled after it, as for any cancel.
  const known = ctx.recentCodes.get(activationId);
  const provider = known && !known.finished ? ctx.byName.get(known.provider) : undefined;
  const settled = known && provider ? await provider.finish(known.ref).then(() => (known.finished = true), () => false) : false;
  const row = await store.changeStatus(ctx.db, activationId, CANCEL, author, undefined, settled);
  if (!row) throw notFound("activation", activationId);
  if (row.changed) ctx.metrics.smsActivation(row.status === S.SMS_STATUS_COMPLETED ? "completed" : "cancelled");
  const answer = (success: boolean, refunded: boolean, error = "") => create(CancelActivationResponseSchema, { success, refunded, error });
  switch (row.status) {
    case S.SMS_STATUS_COMPLETED:
      if (!row.released) await settle(ctx, row).catch((err) => ctx.log.warn({ err: String(err), activation_id: activationId }, "could not finish the rental; the sweeper retries"));
      return answer(true, false, "the code had arrived: the activation is completed and the number returned, without a refund");
    case S.SMS_STATUS_FAILED:
      return answer(false, row.refunded, `the activation already expired without a code${row.refunded ? " and was refunded" : ""}`);
    case S.SMS_STATUS_CANCELLED: {
      ctx.waiters.wake(activationId, answerFor(row)!);
      if (row.released) return answer(true, row.refunded);
      try {
        return answer(true, await settle(ctx, row));
      } catch (err) {
        const e = err instanceof AppError ? err : new AppError("UNAVAILABLE", String(err), { cause: err });
        throw new AppError(e.code, `the activation is cancelled (no code will be accepted), but the refund is not confirmed: ${e.message}. Call CancelActivation again to retry; the sweeper retries too`, { cause: err });
      }
    }
    default:
      throw new AppError("INTERNAL", `activation ${activationId} has an unknown status ${row.status}`);
  }
}

/** The balance at a provider (empty name: the default one). */
export async function balance(ctx: SmsContext, provider: string): Promise<GetBalanceResponse> {
  const p = provider ? ctx.byName.get(provider) : ctx.defaultProvider;
  if (!p) {
    throw invalidArgument("provider", `must be empty (the default, ${ctx.defaultProvider.name}) or one of ${[...ctx.byName.keys()].join(", ")}, got ${quote(provider)}`);
  }
  try {
    return create(GetBalanceResponseSchema, { balance: await p.balance(), currency: p.currency, provider: p.name });
  } catch (err) {
    throw providerError(p, err, "report its balance");
  }
}

/** One activation (tests, the CLI). */
export async function getActivation(ctx: SmsContext, activationId: string): Promise<SMSActivation> {
  checkId(activationId, "activation_id");
  const row = await store.getActivation(ctx.db, activationId);
  if (!row) throw notFound("activation", activationId);
  return toActivation(row);
}

/** Status history of one activation, oldest first. */
export async function activationHistory(ctx: SmsContext, activationId: string): Promise<ActivationHistoryRow[]> {
  checkId(activationId, "activation_id");
  return store.history(ctx.db, activationId);
}
