import type { Actor } from "../audit/audit-log.ts";
import type { Proxy, ProxyHealth, ProxySpec } from "../gen/conveer/v1/proxy_pb.js";
import { allocate, forAccount, release, rotate, sweepExpired } from "./allocation.ts";
import { checkHealth, probe } from "./health.ts";
import { addProxies, listProxies, removeProxy } from "./pool.ts";
import type { ProxyQuery } from "./pool.ts";
import { createProxiesContext } from "./proxies-context.ts";
import type { ProxiesDeps } from "./proxies-context.ts";
import type { ProxyRow, SecretReader } from "./proxy-store.ts";

export type { AccountLookup, ProxiesDeps, ProxyPoolOptions } from "./proxies-context.ts";

/**
 * The proxy pool: allocation, release, rotation, health. Transport-free. The parts:
 * proxies-context.ts (the shared context), allocation.ts (accounts and their proxies), pool.ts
 * (add, list, remove), health.ts (checks), proxy-fields.ts (field validation), proxy-store.ts (SQL).
 */
export function createProxies(deps: ProxiesDeps) {
  const ctx = createProxiesContext(deps);
  return {
    /** Sticky, idempotent allocation with a renewable lease; the password only for a `reader` (audited). */
    allocate: (accountId: string, platform: string, preferredCountry: string, preferredProvider: string, reader?: SecretReader): Promise<Proxy> =>
      allocate(ctx, accountId, platform, preferredCountry, preferredProvider, reader),
    /** Ends an account's allocation; idempotent. */
    release: (accountId: string, proxyId: string) => release(ctx, accountId, proxyId),
    /** The account's current proxy, NOT_FOUND when it holds none; the password only for a `reader` (audited). */
    forAccount: (accountId: string, reader?: SecretReader) => forAccount(ctx, accountId, reader),
    /** Moves the account to a different proxy; RESOURCE_EXHAUSTED when no other is free. The password only for a `reader` (audited). */
    rotate: (accountId: string, reason: string, reader?: SecretReader) => rotate(ctx, accountId, reason, reader),
    /** Really connects through the proxy; records the outcome; takes a failing proxy out of rotation. */
    checkHealth: (proxyId: string, target: string) => checkHealth(ctx, proxyId, target),
    /** Probes one proxy and records the result (used by CheckHealth and the background checker). */
    probe: (row: ProxyRow, target: { host: string; port: number }, signal?: AbortSignal): Promise<ProxyHealth> => probe(ctx, row, target, signal),
    /** Adds proxies; each item succeeds or fails on its own; each added one audited (proxy.add) as `who`'s. */
    add: (specs: ProxySpec[], who: Actor) => addProxies(ctx, specs, who),
    /** A keyset page of the pool (no passwords), filtered, each proxy with the accounts holding it. */
    list: (q: ProxyQuery) => listProxies(ctx, q),
    /** Takes a proxy out of the pool, moving its accounts first; audited (proxy.remove) as `who`'s. */
    remove: (proxyId: string, who: Actor) => removeProxy(ctx, proxyId, who),
    /** Releases allocations whose lease ran out; returns how many. */
    sweepExpired: () => sweepExpired(ctx),
  };
}

/** The proxy pool's API. */
export type Proxies = ReturnType<typeof createProxies>;
