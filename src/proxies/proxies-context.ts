import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import type { Account } from "../gen/conveer/v1/account_pb.js";
import { ProxySchema } from "../gen/conveer/v1/proxy_pb.js";
import type { Proxy } from "../gen/conveer/v1/proxy_pb.js";
import type { Db, Transaction } from "../store/db.ts";
import { isRetryable } from "../store/pg-errors.ts";
import type { Vault } from "../vault/vault.ts";
import { endpointKey, parseEndpoint, systemLookup } from "./address-policy.ts";
import type { AddressPolicy, LookupAll } from "./address-policy.ts";
import { batched } from "../store/batched.ts";
import type { Batched } from "../store/batched.ts";
import { allocateMany, allocationsOfAudited, releaseAllocation, releaseMany } from "./proxy-store.ts";
import type { AllocateAsk, AllocatedOne, AllocatedRow, AuditedAllocationRead, ProxyRow, ReleaseAsk } from "./proxy-store.ts";

/** What the proxy pool needs from AccountService (a direct call in one process, gRPC across). */
export type AccountLookup = { getAccount(req: { accountId: string }): Promise<Account> };

/** Settings of the pool: `checkTarget` is the default target, `allowedTargets` every one CheckHealth may name, `policy` the proxy address policy. */
export type ProxyPoolOptions = {
  leaseMs: number;
  checkTarget: string;
  allowedTargets: readonly string[];
  policy: AddressPolicy;
  checkTimeoutMs: number;
  failureThreshold: number;
};

/** Dependencies of the proxy pool (`lookup` resolves proxy host names for the address policy; the system resolver by default). */
export type ProxiesDeps = { db: Db; vault: Vault; newId: () => string; accounts: AccountLookup; log: Logger; options: ProxyPoolOptions; lookup?: LookupAll };

/** What the pool's module functions share, built once by `createProxiesContext`. */
export type ProxiesContext = {
  readonly db: Db;
  readonly vault: Vault;
  readonly newId: () => string;
  readonly accounts: AccountLookup;
  readonly log: Logger;
  readonly opts: ProxyPoolOptions;
  readonly lookup: LookupAll;
  /** The endpoint keys CheckHealth may dial (`opts.allowedTargets`, parsed once). */
  readonly allowedTargets: ReadonlySet<string>;
  /** GetProxyForAccount with the password (once per warming action): batched with each read's audit record. */
  readonly allocationAudited: Batched<AuditedAllocationRead, AllocatedRow>;
  /** AllocateProxy's common cases, concurrent calls in one statement per preference shape (allocateMany); undefined: take the one-ask path. Each call passes an ask of its own. */
  readonly allocated: Batched<AllocateAsk, AllocatedOne>;
  /** ReleaseProxy, concurrent calls in one statement (releaseMany): the proxy the account held, or undefined. Each call passes an ask of its own. */
  readonly released: Batched<ReleaseAsk, string>;
};

/** Resolves the pool's dependencies into its context. */
export function createProxiesContext({ db, vault, newId, accounts, log, options, lookup = systemLookup }: ProxiesDeps): ProxiesContext {
  const allowedTargets = new Set(options.allowedTargets.map((t) => endpointKey(parseEndpoint(t)!)));
  return {
    db,
    vault,
    newId,
    accounts,
    log,
    opts: options,
    lookup,
    allowedTargets,
    allocationAudited: batched((reads) => allocationsOfAudited(db, reads)),
    allocated: batched((asks) => allocateBatch(db, log, asks), { maxBatch: ALLOCATE_BATCH, oneInFlight: true }),
    released: batched((asks) => releaseBatch(db, asks)),
  };
}

/**
 * At most this many AllocateProxy asks share a statement, and a process runs one such statement
 * at a time (batched's oneInFlight: the asks that come meanwhile wait for the next). A statement locks as many free proxies as it has asks (SKIP LOCKED):
 * one process's calls arriving together in several batches at once would lock most of a small
 * pool in one round trip and leave the allocators of other replicas nothing to take; one batch
 * at a time, of bounded size, interleaves with theirs (see test/replicas.test.ts).
 */
const ALLOCATE_BATCH = 16;

/**
 * A batch of AllocateProxy asks: one allocateMany statement per preference shape (and lease).
 * Only an account's first ask in the batch is in it; a second ask for the same account is left
 * unanswered, and its caller's one-ask path (after this batch) finds the first one's allocation.
 */
async function allocateBatch(db: Db, log: Logger, asks: readonly AllocateAsk[]): Promise<Map<AllocateAsk, AllocatedOne>> {
  const seen = new Set<string>();
  const shapes = new Map<string, AllocateAsk[]>();
  for (const a of asks) {
    if (seen.has(a.accountId)) continue;
    seen.add(a.accountId);
    const shape = JSON.stringify([a.country, a.provider, a.leaseMs]);
    const same = shapes.get(shape);
    if (same) same.push(a);
    else shapes.set(shape, [a]);
  }
  // One shape after another (one statement at a time, as ALLOCATE_BATCH says). A shape whose
  // statement fails leaves its asks unserved: they take the one-ask path, which answers them (or
  // fails them) on its own, while the other shapes' callers get what their statements committed.
  const out = new Map<AllocateAsk, AllocatedOne>();
  for (const same of shapes.values()) {
    const got = await retried(() => allocateMany(db, same, same[0], same[0].leaseMs)).catch((err: unknown) => {
      log.warn({ err: String(err), asks: same.length }, "a batch of allocations failed; its asks take the one-ask path");
      return new Map<string, AllocatedOne>();
    });
    for (const a of same) {
      const row = got.get(a.accountId);
      if (row) out.set(a, row);
    }
  }
  return out;
}

/** A batch of ReleaseProxy asks: one releaseMany statement; a second ask for the same account runs after it, on its own (and finds nothing left to release, or the allocation made meanwhile). */
async function releaseBatch(db: Db, asks: readonly ReleaseAsk[]): Promise<Map<ReleaseAsk, string>> {
  const seen = new Set<string>();
  const first: ReleaseAsk[] = [];
  const again: ReleaseAsk[] = [];
  for (const a of asks) {
    (seen.has(a.accountId) ? again : first).push(a);
    seen.add(a.accountId);
  }
  const got = await retried(() => releaseMany(db, first));
  const out = new Map<ReleaseAsk, string>();
  for (const a of first) {
    const held = got.get(a.accountId);
    if (held) out.set(a, held);
  }
  for (const a of again) {
    const held = await retried(() => releaseAllocation(db, a.accountId, a.proxyId));
    if (held) out.set(a, held);
  }
  return out;
}

/** The vault's associated data for a proxy's password: binds the sealed password to its row. */
export const aad = (id: string) => `proxy:${id}`;

/** Runs fn (a statement, or a whole transaction), run again on serialization failures and deadlocks. */
export async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt < 5 && isRetryable(err)) continue;
      throw err;
    }
  }
}

/** Runs fn in a transaction, retried on serialization failures and deadlocks. */
export function transact<T>(ctx: ProxiesContext, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  return retried(() => ctx.db.transaction(fn));
}

/**
 * The answer for one proxy. The password is filled in only for a `reader` (a caller holding
 * proxies:secrets), and only after the caller has written the audit record of that read.
 */
export async function toProxy(ctx: ProxiesContext, row: ProxyRow, extra: { expiresAt?: Date; note?: string; withPassword: boolean }): Promise<Proxy> {
  return create(ProxySchema, {
    id: row.id,
    host: row.host,
    port: row.port,
    protocol: row.protocol,
    username: row.username,
    password: extra.withPassword && row.password_sealed ? await ctx.vault.open(row.password_sealed, aad(row.id)) : "",
    country: row.country,
    provider: row.provider,
    expiresAt: extra.expiresAt ? timestampFromDate(extra.expiresAt) : undefined,
    allocationNote: extra.note ?? "",
    tags: row.tags,
    capacity: row.capacity,
    allocated: row.allocated,
    healthy: row.healthy,
    consecutiveFailures: row.consecutive_failures,
    lastLatencyMs: row.last_latency_ms ?? 0,
    lastCheckedAt: row.last_checked_at ? timestampFromDate(row.last_checked_at) : undefined,
    lastError: row.last_error,
  });
}
