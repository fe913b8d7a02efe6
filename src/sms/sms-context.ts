import type { Logger } from "pino";
import type { GetCodeResponse } from "../gen/conveer/v1/sms_pb.js";
import type { Db } from "../store/db.ts";
import { CodeWaiters } from "./code-waiters.ts";
import type { DeliveredSms, SmsProvider } from "./provider.ts";
import { createRowLoader } from "./row-loader.ts";
import type { RowLoader } from "./row-loader.ts";

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
  /** Counts activations by outcome (conveer_sms_activations_total); none: not counted. */
  metrics?: SmsMetrics;
};

/** What the SMS domain reports: an activation reached an outcome (rented, rent_failed, code_received, completed, cancelled, expired). */
export type SmsMetrics = { smsActivation(outcome: string): void };

/** A code this process recorded: the code, and the provider's rental it came for (`finished` once CancelActivation finished it). */
export type RecordedCode = { code: string; provider: string; ref: string; finished: boolean };

/** A code whose rental was not in the store when it came (or could not be recorded), held for a retry. */
export type UnmatchedCode = { provider: SmsProvider; m: DeliveredSms; since: number };

/**
 * Everything the SMS domain's module functions share, built once by `createSmsContext` with the
 * options resolved: the dependencies, this process's waiters and held codes, and the run state
 * that only `start`/`stop` and the sweeper change.
 */
export type SmsContext = {
  readonly db: Db;
  readonly providers: SmsProvider[];
  readonly byName: ReadonlyMap<string, SmsProvider>;
  readonly defaultProvider: SmsProvider;
  readonly newId: () => string;
  readonly log: Logger;
  readonly metrics: SmsMetrics;
  readonly now: () => Date;
  readonly opts: { readonly sweepIntervalMs: number; readonly releaseRetryMs: number; readonly unmatchedTtlMs: number };
  /** GetCode calls waiting in this process, keyed by activation id. */
  readonly waiters: CodeWaiters<GetCodeResponse>;
  /** Batched reads of activations by id (waiters re-checking). */
  readonly loader: RowLoader;
  /** Codes whose rental was not in the store when they came: retried on insert and by the sweeper. Keyed by `unmatchedKey`. */
  readonly unmatched: Map<string, UnmatchedCode>;
  /**
   * Codes this process recorded lately, by activation id (the newest RECENT_CODES), with the
   * rental they came for: once an activation has its code, GetCode answers that code for good
   * (CODE_RECEIVED and COMPLETED are the only statuses it can then have), so a GetCode that comes
   * after the code answers from here without reading the store, and CancelActivation can finish
   * the rental before it records the completion (see rentals.ts).
   */
  readonly recentCodes: Map<string, RecordedCode>;
  /** Code recordings still running, awaited by stop(). */
  readonly inflight: Set<Promise<unknown>>;
  readonly run: {
    started: boolean;
    stopped: boolean;
    unsubscribes: (() => void)[];
    unlisten: (() => Promise<void>) | undefined;
    timer: NodeJS.Timeout | undefined;
    sweeping: Promise<unknown> | undefined;
  };
};

/** Validates the providers and resolves the options into the domain's context. */
export function createSmsContext({ db, providers, newId, log, now = () => new Date(), options = {}, metrics = { smsActivation() {} } }: SmsDeps): SmsContext {
  if (providers.length === 0) throw new Error("createSms needs at least one SMS provider (the first is the default)");
  const byName = new Map<string, SmsProvider>();
  for (const p of providers) {
    if (byName.has(p.name)) throw new Error(`two SMS providers are named ${JSON.stringify(p.name)}; provider names must be unique`);
    byName.set(p.name, p);
  }
  return {
    db,
    providers,
    byName,
    defaultProvider: providers[0],
    newId,
    log,
    metrics,
    now,
    opts: {
      sweepIntervalMs: Math.max(10, options.sweepIntervalMs ?? 5000),
      releaseRetryMs: Math.max(0, options.releaseRetryMs ?? 30_000),
      unmatchedTtlMs: options.unmatchedTtlMs ?? 10 * 60_000,
    },
    waiters: new CodeWaiters<GetCodeResponse>(),
    loader: createRowLoader(db),
    unmatched: new Map(),
    recentCodes: new Map(),
    inflight: new Set(),
    run: { started: false, stopped: false, unsubscribes: [], unlisten: undefined, timer: undefined, sweeping: undefined },
  };
}
