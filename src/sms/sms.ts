import { onDelivered, onNotify } from "./codes.ts";
import { getCode } from "./get-code.ts";
import type { CallBounds } from "./get-code.ts";
import { listActivations } from "./list-activations.ts";
import type { ActivationQuery } from "./list-activations.ts";
import { activationHistory, balance, cancel, getActivation, getNumber } from "./rentals.ts";
import { createSmsContext } from "./sms-context.ts";
import type { SmsContext, SmsDeps } from "./sms-context.ts";
import * as store from "./sms-store.ts";
import { scheduleSweep, sweepOnce } from "./sweeper.ts";
export type { SmsDeps, SmsOptions } from "./sms-context.ts";
export type { CallBounds } from "./get-code.ts";
export { DEFAULT_CODE_TIMEOUT_SECONDS, MAX_CODE_TIMEOUT_SECONDS } from "./get-code.ts";
export { toActivation } from "./messages.ts";

/**
 * The SMS domain: rents numbers from providers, records codes, and answers GetCode waits.
 * Transport-free. One provider subscription and one LISTEN per process feed the in-memory waiter
 * registry; `start()` opens them and the sweeper, `stop()` closes them. The parts: sms-context.ts
 * (the shared context), rentals.ts (rent, cancel, balance), get-code.ts (the wait), codes.ts (codes
 * reaching waiters), sweeper.ts and settle.ts (ended rentals), activation-status.ts (the rules),
 * list-activations.ts (ListActivations).
 */
export function createSms(deps: SmsDeps) {
  const ctx = createSmsContext(deps);
  return {
    /** Subscribes to the providers' messages and the store's notifications, and starts the sweeper. */
    start: () => start(ctx),
    /** Stops the sweeper and subscriptions; waiting GetCode calls end with UNAVAILABLE. Providers stay open (their owner closes them). */
    stop: () => stop(ctx),
    /** Rents a number from the default provider for a service; the provider takes the price from its balance. */
    getNumber: (req: { service: string; country: string; operator: string }, author?: string) => getNumber(ctx, req, author),
    /** Waits for an activation's code (see get-code.ts). */
    getCode: (activationId: string, timeoutSeconds: number, call?: CallBounds) => getCode(ctx, activationId, timeoutSeconds, call),
    /** Cancels an activation still waiting for its code and refunds it; a cancelled activation never yields a code. */
    cancel: (activationId: string, author?: string) => cancel(ctx, activationId, author),
    /** The balance at a provider (empty name: the default one). */
    balance: (provider: string) => balance(ctx, provider),
    /** One activation (tests, the CLI). */
    get: (activationId: string) => getActivation(ctx, activationId),
    /** A keyset page of activations, newest first, with the total for the filter. */
    list: (q: ActivationQuery) => listActivations(ctx, q),
    /** Status history of one activation, oldest first. */
    history: (activationId: string) => activationHistory(ctx, activationId),
    /** One sweep now (the background sweeper calls this every interval). */
    sweep: () => sweepOnce(ctx),
    /** Live figures: GetCode calls waiting here, and codes held for rentals not yet stored. */
    stats: (): { waiters: number; unmatchedCodes: number } => ({ waiters: ctx.waiters.size, unmatchedCodes: ctx.unmatched.size }),
  };
}

/** The SMS domain's API. */
export type Sms = ReturnType<typeof createSms>;

async function start(ctx: SmsContext): Promise<void> {
  const { run } = ctx;
  if (run.started) return;
  run.started = true;
  // After a lost store connection, notifications sent meanwhile are gone: every waiter re-reads.
  run.unlisten = await ctx.db.listen(store.SMS_CHANNEL, (id) => onNotify(ctx, id), {
    onResubscribe: () => [...ctx.waiters.keys()].forEach((id) => onNotify(ctx, id)),
  });
  run.unsubscribes = ctx.providers.map((p) => p.onMessage((m) => onDelivered(ctx, p, m)));
  scheduleSweep(ctx);
}

async function stop(ctx: SmsContext): Promise<void> {
  const { run } = ctx;
  run.stopped = true;
  clearTimeout(run.timer);
  for (const u of run.unsubscribes) u();
  run.unsubscribes = [];
  ctx.waiters.close();
  await run.unlisten?.().catch(() => {});
  run.unlisten = undefined;
  await run.sweeping;
  await Promise.allSettled([...ctx.inflight]);
}
