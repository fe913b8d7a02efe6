import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Account } from "../gen/conveer/v1/account_pb.js";
import type { Proxy } from "../gen/conveer/v1/proxy_pb.js";
import { AppError, invalidArgument, quote, resourceInfo } from "../errors.ts";
import { checkId, isId } from "../store/ids.ts";
import { retried, toProxy, transact } from "./proxies-context.ts";
import type { ProxiesContext } from "./proxies-context.ts";
import { checkCountry, checkText } from "./proxy-fields.ts";
import * as store from "./proxy-store.ts";
import type { AllocateAsk, ProxyRow, SecretReader } from "./proxy-store.ts";
import type { Transaction } from "../store/db.ts";

/** Accounts and their proxies: allocate (sticky, leased), release, rotate, move off a failing proxy, expire. */

async function requireAccount(ctx: ProxiesContext, accountId: string): Promise<Account> {
  checkId(accountId, "account_id");
  // A peer's error (unknown account, AccountService down) is mapped in src/server/status.ts.
  const acc = await ctx.accounts.getAccount({ accountId });
  if (acc.status === AccountStatus.DELETED || acc.status === AccountStatus.BANNED) throw notLive(accountId, acc.status);
  return acc;
}

function notLive(accountId: string, status: AccountStatus): AppError {
  return new AppError("FAILED_PRECONDITION", `account ${accountId} is ${AccountStatus[status]}; only live accounts get proxies`, { reason: "ACCOUNT_NOT_ACTIVE" });
}

/** Why the proxy allocated is not the preferred one, or "" when it is. */
export function noteFor(row: ProxyRow, country: string, provider: string): string {
  const missed: string[] = [];
  if (country && row.country !== country) missed.push(`country ${country}`);
  if (provider && row.provider !== provider) missed.push(`provider ${provider}`);
  if (missed.length === 0) return "";
  return `no free healthy proxy matched preferred ${missed.join(" and ")}; allocated ${row.id} (country ${row.country || "unknown"}, provider ${row.provider || "unknown"}) instead`;
}

/** Thrown inside the locking path when a concurrent call for the same account allocated first: the caller tries again and answers that allocation. */
const RACED = new Error("a concurrent AllocateProxy for the account allocated first");

/**
 * Sticky, idempotent allocation with a renewable lease; the password only for a `reader` (audited).
 * The common cases (renew a healthy allocation, or take a free slot) are one statement shared by
 * the calls that arrive together (store.allocateMany through ctx.allocated), then, for an ask it
 * did not serve, one statement of its own (store.allocateInOne); the rest (moving off an unhealthy
 * proxy, every free proxy locked by other allocators, a full pool, a race with another call for
 * the same account) take the locking path.
 * One allocation per account is the primary key of proxy_allocations: two calls for one account
 * never both keep a slot (the loser's insert conflicts, and it answers the winner's allocation).
 */
export async function allocate(ctx: ProxiesContext, accountId: string, platform: string, preferredCountry: string, preferredProvider: string, reader?: SecretReader): Promise<Proxy> {
  const country = checkCountry("preferred_country", preferredCountry);
  const provider = checkText("preferred_provider", preferredProvider.trim(), 128);
  checkText("platform", platform, 32);
  await requireAccount(ctx, accountId);
  const ask = { accountId, platform, leaseMs: ctx.opts.leaseMs, country, provider, reader };
  for (let attempt = 0; ; attempt++) {
    // Concurrent calls first share one statement (allocateMany); an ask it did not serve takes the one-ask path.
    const one = (attempt === 0 && (await ctx.allocated(ask))) || (await retried(() => store.allocateInOne(ctx.db, ask)));
    if (one) {
      const note = one.renewed ? "" : noteFor(one, country, provider);
      if (note) ctx.log.info({ account_id: accountId, proxy_id: one.id }, note);
      return toProxy(ctx, one, { expiresAt: one.expires_at, note, withPassword: Boolean(reader) });
    }
    try {
      return await transact(ctx, (q) => allocateLocked(ctx, q, ask));
    } catch (err) {
      // Two calls for one account raced: the loser tries again and finds the winner's allocation
      // (each try lost means another call for the account went through).
      if (attempt < 10 && err === RACED) continue;
      throw err;
    }
  }
}

/** AllocateProxy's locking path: the account's allocation locked, a slot waited for when every free proxy is locked, a move off an unhealthy proxy. */
async function allocateLocked(ctx: ProxiesContext, q: Transaction, { accountId, platform, leaseMs, country, provider, reader }: AllocateAsk): Promise<Proxy> {
  const cur = await store.lockAllocation(q, accountId);
  if (cur?.healthy) {
    const expiresAt = await store.updateAllocation(q, accountId, cur.id, leaseMs);
    if (reader && cur.password_sealed) await store.insertPasswordAudit(q, accountId, cur.id, reader);
    return toProxy(ctx, cur, { expiresAt, withPassword: Boolean(reader) });
  }
  if (!cur && (await store.accountDeleted(q, accountId))) throw notLive(accountId, AccountStatus.DELETED);
  const row = await store.takeSlot(q, { country, provider, exclude: cur?.id ?? "" });
  if (!row) {
    // No lock serializes the calls for one account: one that took the last slot meanwhile (its
    // row lock made takeSlot wait for its commit) is seen by this fresh read, and answered.
    if (!cur && (await store.allocationOf(q, accountId))) throw RACED;
    throw new AppError("RESOURCE_EXHAUSTED", "no free healthy proxy in the pool; add proxies (AddProxies) or release some", { reason: "NO_FREE_PROXY" });
  }
  let expiresAt: Date;
  if (cur) {
    await store.freeSlot(q, cur.id);
    expiresAt = await store.updateAllocation(q, accountId, row.id, leaseMs);
  } else {
    const inserted = await store.insertAllocation(q, accountId, row.id, platform, leaseMs);
    // A concurrent call for the account inserted first: this transaction rolls back, slot and all.
    if (!inserted) throw RACED;
    expiresAt = inserted;
  }
  const note = noteFor(row, country, provider);
  if (note) ctx.log.info({ account_id: accountId, proxy_id: row.id }, note);
  if (reader && row.password_sealed) await store.insertPasswordAudit(q, accountId, row.id, reader);
  return toProxy(ctx, { ...row }, { expiresAt, note, withPassword: Boolean(reader) });
}

/** Ends an account's allocation; idempotent. One statement (shared by concurrent calls, releaseMany): the allocation deleted and its slot given back. */
export async function release(ctx: ProxiesContext, accountId: string, proxyId: string): Promise<{ success: boolean; proxyId: string }> {
  checkId(accountId, "account_id");
  if (proxyId && !isId(proxyId)) throw invalidArgument("proxy_id", `must be empty or a 24-hex id, got ${quote(proxyId)}`);
  const held = await ctx.released({ accountId, proxyId });
  return held ? { success: true, proxyId: held } : { success: false, proxyId: "" };
}

/** The account's current proxy, NOT_FOUND when it holds none; the password only for a `reader` (audited). */
export async function forAccount(ctx: ProxiesContext, accountId: string, reader?: SecretReader): Promise<Proxy> {
  checkId(accountId, "account_id");
  const cur = reader ? await ctx.allocationAudited({ accountId, reader }) : await store.allocationOf(ctx.db, accountId);
  if (!cur) throw new AppError("NOT_FOUND", `account ${accountId} holds no proxy; call AllocateProxy first`, { details: [resourceInfo("proxy_allocation", accountId, "the account holds no proxy")] });
  return toProxy(ctx, cur, { expiresAt: cur.expires_at, withPassword: Boolean(reader) });
}

/** Moves the account to a different proxy; RESOURCE_EXHAUSTED when no other is free. The password only for a `reader` (audited). */
export async function rotate(ctx: ProxiesContext, accountId: string, reason: string, reader?: SecretReader): Promise<Proxy> {
  checkId(accountId, "account_id");
  const out = await transact(ctx, async (q) => {
    const cur = await store.lockAllocation(q, accountId);
    if (!cur) throw new AppError("NOT_FOUND", `account ${accountId} holds no proxy to rotate; call AllocateProxy first`, { details: [resourceInfo("proxy_allocation", accountId, "the account holds no proxy")] });
    const next = await store.takeSlot(q, { country: cur.country, provider: cur.provider, exclude: cur.id });
    if (!next) throw new AppError("RESOURCE_EXHAUSTED", `no other free healthy proxy to rotate account ${accountId} to; it keeps ${cur.id}`, { reason: "NO_FREE_PROXY" });
    await store.freeSlot(q, cur.id);
    const expiresAt = await store.updateAllocation(q, accountId, next.id, ctx.opts.leaseMs);
    if (reader && next.password_sealed) await store.insertPasswordAudit(q, accountId, next.id, reader);
    return { next, expiresAt, from: cur.id };
  });
  ctx.log.info({ account_id: accountId, from: out.from, to: out.next.id, reason }, "proxy rotated");
  return toProxy(ctx, out.next, { expiresAt: out.expiresAt, withPassword: Boolean(reader) });
}

/** Moves one account to another free proxy (or releases it when none is free). */
async function moveAccount(ctx: ProxiesContext, accountId: string, fromProxy: string): Promise<"moved" | "released" | "gone"> {
  return transact(ctx, async (q) => {
    const cur = await store.lockAllocation(q, accountId);
    if (!cur || cur.id !== fromProxy) return "gone";
    const next = await store.takeSlot(q, { country: cur.country, provider: cur.provider, exclude: fromProxy });
    await store.freeSlot(q, fromProxy);
    if (!next) {
      await store.deleteAllocation(q, accountId);
      return "released";
    }
    await store.updateAllocation(q, accountId, next.id, ctx.opts.leaseMs);
    return "moved";
  });
}

/** Moves every account off a proxy (failing or being removed); answers how many moved and how many were released. */
export async function moveAll(ctx: ProxiesContext, proxyId: string): Promise<{ moved: number; released: number }> {
  let moved = 0;
  let released = 0;
  for (const acc of await store.accountsOn(ctx.db, proxyId)) {
    const r = await moveAccount(ctx, acc, proxyId);
    if (r === "moved") moved++;
    if (r === "released") released++;
  }
  if (moved + released > 0) ctx.log.warn({ proxy_id: proxyId, moved, released }, "accounts moved off proxy");
  return { moved, released };
}

/** Releases allocations whose lease ran out; returns how many. */
export async function sweepExpired(ctx: ProxiesContext): Promise<number> {
  let n = 0;
  for (const acc of await store.expiredAllocations(ctx.db, 500)) {
    const held = await transact(ctx, async (q) => {
      const proxyId = await store.deleteExpiredAllocation(q, acc);
      if (proxyId) await store.freeSlot(q, proxyId);
      return proxyId;
    });
    if (held) n++;
  }
  return n;
}
