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
import { allocationsOfAudited } from "./proxy-store.ts";
import type { AllocatedRow, AuditedAllocationRead, ProxyRow } from "./proxy-store.ts";

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
};

/** Resolves the pool's dependencies into its context. */
export function createProxiesContext({ db, vault, newId, accounts, log, options, lookup = systemLookup }: ProxiesDeps): ProxiesContext {
  const allowedTargets = new Set(options.allowedTargets.map((t) => endpointKey(parseEndpoint(t)!)));
  return { db, vault, newId, accounts, log, opts: options, lookup, allowedTargets, allocationAudited: batched((reads) => allocationsOfAudited(db, reads)) };
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
