/**
 * What stands before the sandbox's rules: fault injection, per-account rate buckets, the
 * idempotency memo of actions, and the access token of the admin and SMS endpoints.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { quote } from "../errors.ts";
import { changed } from "./sandbox-world.ts";
import type { SandboxContext } from "./sandbox-context.ts";
import { SandboxError, bad, own } from "./sandbox-error.ts";
import type { SandboxPlatformState } from "./sandbox-world.ts";

/** Fault injection; latency and errorRate apply to platform calls (not admin, not /v1/sms). */
export type Faults = {
  /** Added delay per platform request, uniform in [minMs, maxMs] (equal values: fixed). */
  latency: { minMs: number; maxMs: number };
  /** Probability (0..1) that a platform request answers 503. */
  errorRate: number;
  /** Delay between sign-up and the code's delivery. */
  codeDelayMs: number;
  /** Probability (0..1) that a sign-up code is never sent. */
  codeLossRate: number;
};

/** Per-account token bucket for the eight actions: `burst` tokens, refilled at `perSecond`. */
export type RateLimit = { burst: number; perSecond: number };

/** No faults, codes after 300 ms. */
export const DEFAULT_FAULTS: Faults = { latency: { minMs: 0, maxMs: 0 }, errorRate: 0, codeDelayMs: 300, codeLossRate: 0 };

/** Idempotency keys remembered per platform; past this the oldest tenth is forgotten. */
export const IDEMPOTENCY_KEYS_KEPT = 200_000;

/** `f` when it is whole and in range (a copy), else an invalid-input refusal. */
export function checkFaults(f: Faults): Faults {
  const rate = (n: number) => typeof n === "number" && n >= 0 && n <= 1;
  const ms = (n: number) => typeof n === "number" && Number.isFinite(n) && n >= 0;
  if (!ms(f.latency?.minMs) || !ms(f.latency?.maxMs) || f.latency.minMs > f.latency.maxMs) throw bad("latency must be {minMs, maxMs} with 0 <= minMs <= maxMs");
  if (!rate(f.errorRate) || !rate(f.codeLossRate)) throw bad("errorRate and codeLossRate must be between 0 and 1");
  if (!ms(f.codeDelayMs)) throw bad("codeDelayMs must be a non-negative number");
  return { latency: { minMs: f.latency.minMs, maxMs: f.latency.maxMs }, errorRate: f.errorRate, codeDelayMs: f.codeDelayMs, codeLossRate: f.codeLossRate };
}

/** `r` when it is in range (a copy), else an invalid-input refusal. */
export function checkRateLimit(r: RateLimit): RateLimit {
  if (!(r.burst >= 1) || !(r.perSecond > 0) || !Number.isFinite(r.burst) || !Number.isFinite(r.perSecond)) throw bad("rate limit must be {burst >= 1, perSecond > 0}");
  return { burst: r.burst, perSecond: r.perSecond };
}

/** Merges `f` into the current fault settings (checked); answers the result. */
export function setFaults(ctx: SandboxContext, f: Partial<Faults>): Faults {
  ctx.faults = checkFaults({ ...ctx.faults, ...f, latency: { ...ctx.faults.latency, ...f.latency } });
  return ctx.faults;
}

/** Merges `r` into the rate limit (checked) and refills every bucket; answers the result. */
export function setRateLimit(ctx: SandboxContext, r: Partial<RateLimit>): RateLimit {
  ctx.rateLimit = checkRateLimit({ ...ctx.rateLimit, ...r });
  ctx.buckets.clear();
  return ctx.rateLimit;
}

/** The injected delay (ms) for the next platform call, drawn from the latency range. */
export function faultDelay(ctx: SandboxContext): number {
  const { minMs, maxMs } = ctx.faults.latency;
  return minMs + ctx.random() * (maxMs - minMs);
}

/** Throws the injected 503 with probability errorRate. */
export function injectFailure(ctx: SandboxContext): void {
  if (ctx.random() < ctx.faults.errorRate) throw new SandboxError("unavailable", "the sandbox platform failed (injected fault)");
}

/** Takes one token from the bucket `key`; returns 0, or the ms until one is available. */
export function take(ctx: SandboxContext, key: string): number {
  const { burst, perSecond } = ctx.rateLimit;
  const t = ctx.now();
  const b = ctx.buckets.get(key) ?? { tokens: burst, at: t };
  b.tokens = Math.min(burst, b.tokens + (Math.max(0, t - b.at) / 1000) * perSecond);
  b.at = t;
  ctx.buckets.set(key, b);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return Math.ceil(((1 - b.tokens) / perSecond) * 1000);
}

/** Takes a token for `userId`'s action on `p`, or refuses with rate_limited and the wait. */
export function spendAction(ctx: SandboxContext, p: string, userId: string): void {
  const wait = take(ctx, `${p}/${userId}`);
  if (wait > 0) throw new SandboxError("rate_limited", `too many actions; retry in ${wait} ms`, wait);
}

/** An Idempotency-Key header's value ("" when absent); 1-255 visible ASCII characters. */
export function idempotencyKeyOf(header: string | string[] | undefined): string {
  const key = (Array.isArray(header) ? header[0] : header) ?? "";
  if (key && !/^[\x21-\x7e]{1,255}$/.test(key)) throw bad("Idempotency-Key must be 1-255 visible ASCII characters");
  return key;
}

/** The answer remembered for `key` (counted as a replay), or undefined; refuses a key another account used. */
export function replay(ctx: SandboxContext, s: SandboxPlatformState, key: string, userId: string): SandboxPlatformState["idempotency"][string] | undefined {
  const seen = own(s.idempotency, key);
  if (!seen) return undefined;
  if (seen.userId !== userId) throw new SandboxError("key_reused", `Idempotency-Key ${quote(key)} was used by another account; use a new key`);
  seen.replays++;
  changed(ctx);
  return seen;
}

// How many keys each memo holds, counted once (a loaded world) and kept as keys come and go, so
// remembering a key costs no scan of the memo.
const memoSizes = new WeakMap<SandboxPlatformState["idempotency"], number>();

/**
 * Remembers an action's answer under `key`, forgetting the oldest tenth past IDEMPOTENCY_KEYS_KEPT
 * (keys iterate in insertion order; the scan runs once per tenth, not per key).
 */
export function remember(s: SandboxPlatformState, key: string, answer: SandboxPlatformState["idempotency"][string]): void {
  const memo = s.idempotency;
  let size = memoSizes.get(memo) ?? Object.keys(memo).length;
  if (!Object.hasOwn(memo, key)) size++;
  memo[key] = answer;
  if (size > IDEMPOTENCY_KEYS_KEPT) {
    let forget = Math.ceil(IDEMPOTENCY_KEYS_KEPT / 10);
    for (const k in memo) {
      if (forget-- <= 0) break;
      delete memo[k];
      size--;
    }
  }
  memoSizes.set(memo, size);
}

/** Refuses an admin or SMS request whose Authorization header lacks the access token (when one is set and required now). */
export async function checkAccess(ctx: SandboxContext, authorization: string | undefined): Promise<void> {
  const access = ctx.access;
  if (!access?.token || (access.required && !(await access.required()))) return;
  const sent = /^Bearer\s+(\S+)$/i.exec(authorization?.trim() ?? "")?.[1] ?? "";
  const a = createHash("sha256").update(sent).digest();
  const b = createHash("sha256").update(access.token).digest();
  if (!sent || !timingSafeEqual(a, b)) {
    throw new SandboxError("access_denied", "this sandbox endpoint (admin or SMS) needs the header \"authorization: Bearer <CONVEER_SANDBOX_TOKEN>\"");
  }
}
