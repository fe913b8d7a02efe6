import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { CancelActivationResponseSchema, GetBalanceResponseSchema, GetCodeResponseSchema, SMSActivationSchema, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { CancelActivationResponse, GetBalanceResponse, GetCodeResponse, SMSActivation } from "../gen/conveer/v1/sms_pb.js";
import { checkId } from "../store/ids.ts";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { AppError, invalidArgument, notFound, quote } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { CodeWaiters } from "./code-waiters.ts";
import type { WaitResult } from "./code-waiters.ts";
import type { DeliveredSms, Rental, SmsProvider, SmsProviderErrorKind } from "./provider.ts";
import * as store from "./sms-store.ts";
import type { ActivationHistoryRow, ActivationRow } from "./sms-store.ts";

/** Settings of the SMS domain; every field has a default. */
export type SmsOptions = {
  /** How often the sweeper runs (expiry, provider settlement retries). Default 5 s. */
  sweepIntervalMs?: number;
  /** How long a failed provider settlement (refund, finish) waits before the sweeper retries it. Default 30 s. */
  releaseRetryMs?: number;
  /** How long a code for a rental not (yet) in the store is kept for a retry. Default 10 min. */
  unmatchedTtlMs?: number;
};

/** Dependencies of the SMS domain. The first provider is the default one. */
export type SmsDeps = {
  db: Db;
  providers: SmsProvider[];
  newId: () => string;
  log: Logger;
  /** The clock for expiry decisions (tests move it); waits use real time. */
  now?: () => Date;
  options?: SmsOptions;
};

/** How the caller of GetCode is bounded: its cancellation and the time left before its deadline. */
export type CallBounds = { signal?: AbortSignal; timeoutMs?: number };

/** GetCode's timeout_seconds: 0 means the default. */
export const DEFAULT_CODE_TIMEOUT_SECONDS = 120;
export const MAX_CODE_TIMEOUT_SECONDS = 600;

const S = SMSStatus;
const OPEN = new Set<number>([S.SMS_STATUS_PENDING, S.SMS_STATUS_WAITING_CODE]);
const COUNTRY = /^[a-z]{2}$/;
const OPERATOR = /^[A-Za-z0-9_.-]{0,64}$/;
/** A waiter past its activation's expiry keeps waiting this long for a code the provider sent at the last moment. */
const EXPIRY_GRACE_MS = 2000;
/** The answer goes out this much before the caller's deadline, so the caller gets success=false rather than DEADLINE_EXCEEDED. */
const DEADLINE_MARGIN_MS = 200;
const MAX_UNMATCHED = 10_000;
const SWEEP_BATCH = 500;

function providerKind(err: unknown): SmsProviderErrorKind | undefined {
  const e = err as { name?: unknown; kind?: unknown } | null;
  return e && e.name === "SmsProviderError" && typeof e.kind === "string" ? (e.kind as SmsProviderErrorKind) : undefined;
}

/** A provider failure as the status the client should see. */
function providerError(p: SmsProvider, err: unknown, doing: string): AppError {
  if (err instanceof AppError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  switch (providerKind(err)) {
    case "unknown_service":
      return invalidArgument("service", `is not offered by SMS provider ${p.name}: ${msg}`);
    case "no_numbers":
      return new AppError("RESOURCE_EXHAUSTED", `SMS provider ${p.name} has no free number for this service and country (${msg}); retry later or try another country or operator`);
    case "insufficient_balance":
      return new AppError("RESOURCE_EXHAUSTED", `the balance at SMS provider ${p.name} is too low to ${doing} (${msg}); top it up and retry`);
    case "not_found":
      return new AppError("NOT_FOUND", `SMS provider ${p.name} does not know this rental: ${msg}`);
    default:
      return new AppError("UNAVAILABLE", `SMS provider ${p.name} could not ${doing}: ${msg}; retry later`, { cause: err });
  }
}

/** The end of a wait as the call's error: cancelled by the client, or its deadline passed. */
function abortError(reason: unknown): AppError {
  if (reason instanceof AppError) return reason;
  if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) return new AppError("DEADLINE_EXCEEDED", "the call's deadline passed while waiting for the code");
  return new AppError("CANCELLED", "the call was cancelled while waiting for the code");
}

const codeAnswer = (code: string) => create(GetCodeResponseSchema, { code, success: true });
const failedAnswer = (error: string) => create(GetCodeResponseSchema, { success: false, error });

/** What GetCode answers for a row, or undefined while the code is still awaited. */
function answerFor(row: ActivationRow): GetCodeResponse | undefined {
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

/** Maps a row to the API message. */
export function toActivation(row: ActivationRow): SMSActivation {
  return create(SMSActivationSchema, {
    id: row.id,
    phone: row.phone,
    service: row.service,
    country: row.country,
    status: row.status,
    expiresAt: timestampFromDate(row.expires_at),
  });
}

/**
 * Reads activations by id in batches: every read asked for in one turn of the event loop goes out
 * as one query, so ten thousand GetCode calls arriving together cost a handful of queries.
 */
function createRowLoader(db: Db) {
  let pending: Map<string, PromiseWithResolvers<ActivationRow | undefined>[]> | undefined;
  async function flush(batch: Map<string, PromiseWithResolvers<ActivationRow | undefined>[]>): Promise<void> {
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      try {
        const rows = new Map((await store.getActivations(db, chunk)).map((r) => [r.id, r]));
        for (const id of chunk) for (const w of batch.get(id)!) w.resolve(rows.get(id));
      } catch (err) {
        for (const id of chunk) for (const w of batch.get(id)!) w.reject(err);
      }
    }
  }
  return {
    load(id: string): Promise<ActivationRow | undefined> {
      if (!pending) {
        const batch = (pending = new Map());
        setImmediate(() => {
          pending = undefined;
          void flush(batch);
        });
      }
      const w = Promise.withResolvers<ActivationRow | undefined>();
      const list = pending.get(id);
      if (list) list.push(w);
      else pending.set(id, [w]);
      return w.promise;
    },
  };
}

/**
 * The SMS domain: rents numbers from providers, records codes, and answers GetCode waits.
 * Transport-free. One provider subscription and one LISTEN per process feed the in-memory waiter
 * registry; `start()` opens them and the sweeper, `stop()` closes them.
 */
export function createSms({ db, providers, newId, log, now = () => new Date(), options = {} }: SmsDeps) {
  if (providers.length === 0) throw new Error("createSms needs at least one SMS provider (the first is the default)");
  const byName = new Map<string, SmsProvider>();
  for (const p of providers) {
    if (byName.has(p.name)) throw new Error(`two SMS providers are named ${JSON.stringify(p.name)}; provider names must be unique`);
    byName.set(p.name, p);
  }
  const defaultProvider = providers[0];
  const sweepIntervalMs = Math.max(10, options.sweepIntervalMs ?? 5000);
  const releaseRetryMs = Math.max(0, options.releaseRetryMs ?? 30_000);
  const unmatchedTtlMs = options.unmatchedTtlMs ?? 10 * 60_000;

  const waiters = new CodeWaiters<GetCodeResponse>();
  const loader = createRowLoader(db);
  /** Codes whose rental was not in the store when they came (or could not be recorded): retried on insert and by the sweeper. */
  const unmatched = new Map<string, { provider: SmsProvider; m: DeliveredSms; since: number }>();
  const inflight = new Set<Promise<unknown>>();
  let unsubscribes: (() => void)[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<unknown> | undefined;
  let started = false;
  let stopped = false;

  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p)).catch(() => {});
    return p;
  };
  const unmatchedKey = (provider: string, ref: string) => `${provider}\u0000${ref}`;

  /** Records a delivered code on its activation (when still open), notifies every replica, wakes local waiters. */
  async function recordCode(p: SmsProvider, m: DeliveredSms): Promise<"recorded" | "ignored" | "unmatched"> {
    const out = await store.recordCode(db, p.name, m.ref, m.code, `provider:${p.name}`);
    if (!out) return "unmatched";
    if (out.recorded) {
      waiters.wake(out.id, codeAnswer(m.code));
      return "recorded";
    }
    // A code already recorded (another replica heard the same message) is routine; a code after a cancel or expiry is worth a line.
    const already = out.status === S.SMS_STATUS_CODE_RECEIVED || out.status === S.SMS_STATUS_COMPLETED;
    log[already ? "debug" : "info"]({ activation_id: out.id, status: SMSStatus[out.status], provider: p.name }, "an SMS code arrived for an activation that no longer waits for one; ignored");
    return "ignored";
  }

  function remember(p: SmsProvider, m: DeliveredSms): void {
    const key = unmatchedKey(p.name, m.ref);
    if (!unmatched.has(key) && unmatched.size >= MAX_UNMATCHED) {
      const oldest = unmatched.keys().next().value!;
      unmatched.delete(oldest);
      log.warn({ provider: p.name }, "too many SMS codes for unknown rentals are held; dropped the oldest");
    }
    unmatched.set(key, { provider: p, m, since: unmatched.get(key)?.since ?? Date.now() });
  }

  /** The provider subscription's listener: never throws, never blocks the provider. */
  function onDelivered(p: SmsProvider, m: DeliveredSms): void {
    if (!m.code) {
      log.warn({ provider: p.name, ref: m.ref }, "an SMS arrived without a code the provider could extract; still waiting for one");
      return;
    }
    track(
      recordCode(p, m).then(
        (kind) => {
          if (kind === "unmatched") remember(p, m);
        },
        (err: unknown) => {
          log.warn({ err: String(err), provider: p.name, ref: m.ref }, "could not record an SMS code; the sweeper retries it");
          remember(p, m);
        },
      ),
    );
  }

  /** A NOTIFY from any replica: re-read the activation once and wake whoever waits on it here. */
  function onNotify(id: string): void {
    if (!waiters.has(id)) return;
    loader.load(id).then(
      (row) => {
        const answer = row && answerFor(row);
        if (answer) waiters.wake(id, answer);
      },
      (err: unknown) => log.warn({ err: String(err), activation_id: id }, "could not read an activation after its notification; its waiters re-check at their deadline"),
    );
  }

  /** Retries a code that arrived before its activation was stored. */
  async function retryUnmatched(provider: string, ref: string): Promise<void> {
    const key = unmatchedKey(provider, ref);
    const e = unmatched.get(key);
    if (!e) return;
    unmatched.delete(key);
    try {
      if ((await recordCode(e.provider, e.m)) === "unmatched") unmatched.set(key, e);
    } catch (err) {
      unmatched.set(key, e);
      log.warn({ err: String(err), provider, ref }, "could not record an SMS code; the sweeper retries it");
    }
  }

  /**
   * Settles the provider side of an ended activation: cancel (refunds when no code came) for
   * CANCELLED and FAILED, finish for COMPLETED. Answers whether a refund is confirmed; throws
   * (and leaves the row for the sweeper's retry) when the provider cannot be reached.
   */
  async function settle(row: ActivationRow): Promise<boolean> {
    const p = byName.get(row.provider);
    if (!p) throw new AppError("UNAVAILABLE", `SMS provider ${JSON.stringify(row.provider)} of activation ${row.id} is not configured in this process`);
    let refunded = false;
    try {
      if (row.status === S.SMS_STATUS_COMPLETED) await p.finish(row.provider_ref);
      else refunded = (await p.cancel(row.provider_ref)).refunded;
    } catch (err) {
      // The provider no longer knows the rental: it has ended it itself; nothing is left to settle.
      if (providerKind(err) !== "not_found") {
        await store.touch(db, row.id).catch(() => {});
        throw providerError(p, err, row.status === S.SMS_STATUS_COMPLETED ? "finish the rental" : "cancel the rental");
      }
    }
    const updated = await store.markReleased(db, row.id, refunded);
    return updated?.refunded ?? refunded;
  }

  async function sweepOnce(): Promise<{ expired: number; completed: number; settled: number; codes: number }> {
    const out = { expired: 0, completed: 0, settled: 0, codes: 0 };
    // 1. Retry provider settlements that failed earlier (a refund is money: keep trying).
    for (const row of await store.unreleased(db, releaseRetryMs, 100)) {
      try {
        await settle(row);
        out.settled++;
      } catch (err) {
        log.warn({ err: String(err), activation_id: row.id }, "could not settle an ended activation with its provider; retrying later");
      }
    }
    // 2. End rentals past their expiry: no code → FAILED (and refunded), code → COMPLETED (and finished).
    const t = now();
    for (const id of await store.expiredOpen(db, t, SWEEP_BATCH)) {
      const row = await db.transaction(async (tx) => {
        const r = await store.getActivation(tx, id, true);
        if (!r || r.expires_at > t) return undefined;
        if (OPEN.has(r.status)) {
          await store.setStatus(tx, id, r.status, S.SMS_STATUS_FAILED, "expired without a code", "sweeper");
          return { ...r, status: S.SMS_STATUS_FAILED };
        }
        if (r.status === S.SMS_STATUS_CODE_RECEIVED) {
          await store.setStatus(tx, id, r.status, S.SMS_STATUS_COMPLETED, "rental ended after the code arrived", "sweeper");
          return { ...r, status: S.SMS_STATUS_COMPLETED };
        }
        return undefined;
      });
      if (!row) continue;
      if (row.status === S.SMS_STATUS_FAILED) {
        out.expired++;
        waiters.wake(id, answerFor(row)!);
      } else out.completed++;
      try {
        await settle(row);
        out.settled++;
      } catch (err) {
        log.warn({ err: String(err), activation_id: id }, "could not settle an expired activation with its provider; retrying later");
      }
    }
    // 3. Codes that came before their rental was stored (or while the store was unreachable).
    for (const [key, e] of [...unmatched]) {
      if (Date.now() - e.since > unmatchedTtlMs) {
        unmatched.delete(key);
        log.warn({ provider: e.provider.name, ref: e.m.ref }, "dropped an SMS code whose rental never appeared in the store");
        continue;
      }
      const before = unmatched.size;
      await retryUnmatched(e.provider.name, e.m.ref);
      if (unmatched.size < before) out.codes++;
    }
    return out;
  }

  /** Re-reads an activation after its waiter is registered: closes the race with a code recorded between the first read and the registration. */
  function recheck(id: string): void {
    loader.load(id).then(
      (row) => {
        const answer = row && answerFor(row);
        if (answer) waiters.wake(id, answer);
      },
      (err: unknown) => log.warn({ err: String(err), activation_id: id }, "could not re-check an activation after registering its waiter; waiting on notifications"),
    );
  }

  /** What GetCode answers once its wait ends. */
  async function afterWait(r: WaitResult<GetCodeResponse>, id: string, why: "timeout" | "deadline" | "expiry", seconds: number, started: number, expiresAt: Date): Promise<GetCodeResponse> {
    switch (r.kind) {
      case "woken":
        return r.value;
      case "aborted":
        throw abortError(r.reason);
      case "closed":
        throw new AppError("UNAVAILABLE", "the SMS service is stopping; call GetCode again");
      case "deadline": {
        // One last look: a notification may have been lost while the store connection was down.
        const last = await loader.load(id);
        const answer = last && answerFor(last);
        if (answer) return answer;
        const waited = ((Date.now() - started) / 1000).toFixed(1);
        if (why === "expiry") return failedAnswer(`timed out: the activation expired at ${expiresAt.toISOString()} without a code`);
        if (why === "deadline") return failedAnswer(`timed out at the call's deadline after ${waited}s waiting for the code; call GetCode again with a longer deadline`);
        return failedAnswer(`timed out after ${seconds}s waiting for the code; call GetCode again to keep waiting`);
      }
    }
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      sweeping = sweepOnce()
        .then((r) => {
          if (r.expired || r.completed) log.info(r, "swept SMS activations whose rental ended");
        })
        .catch((err: unknown) => log.warn({ err: String(err) }, "SMS sweep failed; retrying next tick"))
        .finally(() => {
          sweeping = undefined;
          schedule();
        });
    }, sweepIntervalMs);
  }

  return {
    /** Subscribes to the providers' messages and the store's notifications, and starts the sweeper. */
    async start(): Promise<void> {
      if (started) return;
      started = true;
      // After a lost store connection, notifications sent meanwhile are gone: every waiter re-reads.
      unlisten = await db.listen(store.SMS_CHANNEL, onNotify, { onResubscribe: () => [...waiters.keys()].forEach(onNotify) });
      unsubscribes = providers.map((p) => p.onMessage((m) => onDelivered(p, m)));
      schedule();
    },

    /** Stops the sweeper and subscriptions; waiting GetCode calls end with UNAVAILABLE. Providers stay open (their owner closes them). */
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      for (const u of unsubscribes) u();
      unsubscribes = [];
      waiters.close();
      await unlisten?.().catch(() => {});
      unlisten = undefined;
      await sweeping;
      await Promise.allSettled([...inflight]);
    },

    /** Rents a number from the default provider for a service; the provider takes the price from its balance. */
    async getNumber(req: { service: string; country: string; operator: string }, author = ""): Promise<SMSActivation> {
      if (!req.service) throw invalidArgument("service", `is required: one of ${PLATFORMS.join(", ")}`);
      if (!isPlatform(req.service)) throw invalidArgument("service", `must be one of ${PLATFORMS.join(", ")}, got ${quote(req.service)}`);
      const country = (req.country.trim() || "ru").toLowerCase();
      if (!COUNTRY.test(country)) throw invalidArgument("country", `must be an ISO 3166 alpha-2 code like ru (the default), got ${quote(req.country)}`);
      const operator = req.operator.trim();
      if (!OPERATOR.test(operator)) throw invalidArgument("operator", `must be at most 64 letters, digits, '.', '_' or '-', got ${quote(req.operator)}`);
      const p = defaultProvider;
      let rental: Rental;
      try {
        rental = await p.rent({ service: req.service, country, operator });
      } catch (err) {
        throw providerError(p, err, "rent a number");
      }
      let row: ActivationRow;
      try {
        row = await db.transaction((tx) =>
          store.insertActivation(
            tx,
            {
              id: newId(),
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
          ),
        );
      } catch (err) {
        // The number is paid for but not recorded: hand it back rather than lose the money.
        await p.cancel(rental.ref).catch((e: unknown) => log.error({ err: String(e), provider: p.name, ref: rental.ref }, "could not hand back a rented number that failed to be stored"));
        throw err;
      }
      await retryUnmatched(p.name, rental.ref);
      return toActivation(row);
    },

    /**
     * Waits for an activation's code: answers at once when it is there (or the activation ended),
     * else when it arrives, or success=false when timeout_seconds, the activation's expiry or the
     * caller's deadline comes first. The caller's cancellation ends the wait with CANCELLED.
     */
    async getCode(activationId: string, timeoutSeconds: number, call: CallBounds = {}): Promise<GetCodeResponse> {
      checkId(activationId, "activation_id");
      if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0 || timeoutSeconds > MAX_CODE_TIMEOUT_SECONDS) {
        throw invalidArgument("timeout_seconds", `must be between 1 and ${MAX_CODE_TIMEOUT_SECONDS} (0 for the default, ${DEFAULT_CODE_TIMEOUT_SECONDS}), got ${timeoutSeconds}`);
      }
      const seconds = timeoutSeconds || DEFAULT_CODE_TIMEOUT_SECONDS;
      const started = Date.now();
      if (call.signal?.aborted) throw abortError(call.signal.reason);
      const row = await loader.load(activationId);
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
      const expiryAt = Date.now() + (row.expires_at.getTime() - now().getTime()) + EXPIRY_GRACE_MS;
      if (expiryAt < until) {
        until = expiryAt;
        why = "expiry";
      }

      // The waiting call holds only the registry's waiter and this small continuation: getCode's
      // own frame (and the row it read) is gone while it waits.
      const waiting = waiters.wait(activationId, until, call.signal);
      recheck(activationId);
      const expiresAt = row.expires_at;
      return waiting.then((r) => afterWait(r, activationId, why, seconds, started, expiresAt));
    },

    /** Cancels an activation still waiting for its code and refunds it; a cancelled activation never yields a code. */
    async cancel(activationId: string, author = ""): Promise<CancelActivationResponse> {
      checkId(activationId, "activation_id");
      const row = await db.transaction(async (tx) => {
        const r = await store.getActivation(tx, activationId, true);
        // After the code: ending the activation completes it (the number is handed back, no refund).
        if (r?.status === S.SMS_STATUS_CODE_RECEIVED) {
          await store.setStatus(tx, activationId, r.status, S.SMS_STATUS_COMPLETED, "completed: the code was used", author);
          return { ...r, status: S.SMS_STATUS_COMPLETED };
        }
        if (!r || !OPEN.has(r.status)) return r;
        await store.setStatus(tx, activationId, r.status, S.SMS_STATUS_CANCELLED, "cancelled", author);
        return { ...r, status: S.SMS_STATUS_CANCELLED };
      });
      if (!row) throw notFound("activation", activationId);
      const answer = (success: boolean, refunded: boolean, error = "") => create(CancelActivationResponseSchema, { success, refunded, error });
      switch (row.status) {
        case S.SMS_STATUS_COMPLETED:
          if (!row.released) await settle(row).catch((err) => log.warn({ err: String(err), activation_id: activationId }, "could not finish the rental; the sweeper retries"));
          return answer(true, false, "the code had arrived: the activation is completed and the number returned, without a refund");
        case S.SMS_STATUS_FAILED:
          return answer(false, row.refunded, `the activation already expired without a code${row.refunded ? " and was refunded" : ""}`);
        case S.SMS_STATUS_CANCELLED: {
          waiters.wake(activationId, answerFor(row)!);
          if (row.released) return answer(true, row.refunded);
          try {
            return answer(true, await settle(row));
          } catch (err) {
            const e = err instanceof AppError ? err : new AppError("UNAVAILABLE", String(err), { cause: err });
            throw new AppError(e.code, `the activation is cancelled (no code will be accepted), but the refund is not confirmed: ${e.message}. Call CancelActivation again to retry; the sweeper retries too`, { cause: err });
          }
        }
        default:
          throw new AppError("INTERNAL", `activation ${activationId} has an unknown status ${row.status}`);
      }
    },

    /** The balance at a provider (empty name: the default one). */
    async balance(provider: string): Promise<GetBalanceResponse> {
      const p = provider ? byName.get(provider) : defaultProvider;
      if (!p) {
        throw invalidArgument("provider", `must be empty (the default, ${defaultProvider.name}) or one of ${[...byName.keys()].join(", ")}, got ${quote(provider)}`);
      }
      try {
        return create(GetBalanceResponseSchema, { balance: await p.balance(), currency: p.currency, provider: p.name });
      } catch (err) {
        throw providerError(p, err, "report its balance");
      }
    },

    /** One activation (tests, the CLI). */
    async get(activationId: string): Promise<SMSActivation> {
      checkId(activationId, "activation_id");
      const row = await store.getActivation(db, activationId);
      if (!row) throw notFound("activation", activationId);
      return toActivation(row);
    },

    /** Status history of one activation, oldest first. */
    async history(activationId: string): Promise<ActivationHistoryRow[]> {
      checkId(activationId, "activation_id");
      return store.history(db, activationId);
    },

    /** One sweep now (the background sweeper calls this every interval). */
    sweep: sweepOnce,

    /** Live figures: GetCode calls waiting here, and codes held for rentals not yet stored. */
    stats(): { waiters: number; unmatchedCodes: number } {
      return { waiters: waiters.size, unmatchedCodes: unmatched.size };
    },
  };
}

/** The SMS domain's API. */
export type Sms = ReturnType<typeof createSms>;
