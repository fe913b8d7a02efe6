import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Account } from "../gen/conveer/v1/account_pb.js";
import { ProxyHealthSchema, ProxySchema } from "../gen/conveer/v1/proxy_pb.js";
import type { Proxy, ProxyHealth, ProxySpec } from "../gen/conveer/v1/proxy_pb.js";
import { AppError, invalidArgument, notFound, quote } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import type { Db, Queryable } from "../store/db.ts";
import { isId } from "../store/ids.ts";
import { PgError, isRetryable, sqlState } from "../store/pg-errors.ts";
import type { Vault } from "../vault/vault.ts";
import { checkEndpoint, dialGuard, endpointKey, parseEndpoint, systemLookup } from "./address-policy.ts";
import type { AddressPolicy, LookupAll } from "./address-policy.ts";
import { probeProxy } from "./proxy-dial.ts";
import { parseProxyUrl } from "./proxy-url.ts";
import * as store from "./proxy-store.ts";
import type { ProxyRow, SecretReader } from "./proxy-store.ts";

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

const COUNTRY = /^[A-Z]{2}$/;
// Class id of the per-account advisory lock that serializes AllocateProxy calls for one account.
const ALLOCATE_LOCK = 7_315_403;
const CONTROL = /[\x00-\x1f\x7f]/;
const MAX_TAGS = 32;

/** A free-text field: at most `max` characters and no control characters (PostgreSQL text cannot hold NUL). */
function checkText(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidArgument(field, `must be at most ${max} characters, got ${value.length}`);
  if (CONTROL.test(value)) throw invalidArgument(field, "must not contain control characters");
  return value;
}

/** An optional ISO 3166 alpha-2 code, upper-cased; "" when empty. */
function checkCountry(field: string, value: string): string {
  const country = value.trim().toUpperCase();
  if (country && !COUNTRY.test(country)) throw invalidArgument(field, `must be an ISO 3166 alpha-2 code like RU, got ${quote(value)}`);
  return country;
}

/** The proxy pool: allocation, release, rotation, health. Transport-free. */
export function createProxies({ db, vault, newId, accounts, log, options, lookup = systemLookup }: ProxiesDeps) {
  const aad = (id: string) => `proxy:${id}`;
  const allowedTargets = new Set(options.allowedTargets.map((t) => endpointKey(parseEndpoint(t)!)));

  /**
   * The address policy's verdict on each item's proxy host, before the insert transaction opens:
   * names are resolved (each distinct name once, a few at a time) and every address must pass.
   * Items whose URL does not parse are left to the per-item validation.
   */
  async function policyRefusals(specs: ProxySpec[]): Promise<Map<number, AppError>> {
    const out = new Map<number, AppError>();
    if (options.policy.allowPrivate) return out;
    const resolved = new Map<string, Promise<string[]>>();
    const once: LookupAll = (host) => {
      let p = resolved.get(host);
      if (!p) resolved.set(host, (p = lookup(host)));
      return p;
    };
    const queue = [...specs.entries()];
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [index, spec] = next;
        let parsed: { host: string; port: number };
        try {
          parsed = parseProxyUrl(spec.url);
        } catch {
          continue;
        }
        try {
          await checkEndpoint(options.policy, "proxy host", parsed, once);
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          out.set(index, new AppError(err.code, `proxies[${index}].url ${err.message}`));
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return out;
  }

  /**
   * The answer for one proxy. The password is filled in only for a `reader` (a caller holding
   * proxies:secrets), and only after the caller has written the audit record of that read.
   */
  async function toProxy(row: ProxyRow, extra: { expiresAt?: Date; note?: string; withPassword: boolean }): Promise<Proxy> {
    return create(ProxySchema, {
      id: row.id,
      host: row.host,
      port: row.port,
      protocol: row.protocol,
      username: row.username,
      password: extra.withPassword && row.password_sealed ? await vault.open(row.password_sealed, aad(row.id)) : "",
      country: row.country,
      provider: row.provider,
      expiresAt: extra.expiresAt ? timestampFromDate(extra.expiresAt) : undefined,
      allocationNote: extra.note ?? "",
      tags: row.tags,
      capacity: row.capacity,
      allocated: row.allocated,
      healthy: row.healthy,
      consecutiveFailures: row.consecutive_failures,
    });
  }

  /** Retries a transaction on serialization failures and deadlocks. */
  async function tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await db.transaction(fn);
      } catch (err) {
        if (attempt < 5 && isRetryable(err)) continue;
        throw err;
      }
    }
  }

  async function requireAccount(accountId: string): Promise<Account> {
    checkId(accountId, "account_id");
    // A peer's error (unknown account, AccountService down) is mapped in src/server/status.ts.
    const acc = await accounts.getAccount({ accountId });
    if (acc.status === AccountStatus.DELETED || acc.status === AccountStatus.BANNED) {
      throw new AppError("FAILED_PRECONDITION", `account ${accountId} is ${AccountStatus[acc.status]}; only live accounts get proxies`);
    }
    return acc;
  }

  function noteFor(row: ProxyRow, country: string, provider: string): string {
    const missed: string[] = [];
    if (country && row.country !== country) missed.push(`country ${country}`);
    if (provider && row.provider !== provider) missed.push(`provider ${provider}`);
    if (missed.length === 0) return "";
    return `no free healthy proxy matched preferred ${missed.join(" and ")}; allocated ${row.id} (country ${row.country || "unknown"}, provider ${row.provider || "unknown"}) instead`;
  }

  /** Moves one account to another free proxy (or releases it when none is free). */
  async function moveAccount(accountId: string, fromProxy: string): Promise<"moved" | "released" | "gone"> {
    return tx(async (q) => {
      const cur = await store.allocationOf(q, accountId, true);
      if (!cur || cur.id !== fromProxy) return "gone";
      const next = await store.takeSlot(q, { country: cur.country, provider: cur.provider, exclude: fromProxy });
      await store.freeSlot(q, fromProxy);
      if (!next) {
        await store.deleteAllocation(q, accountId);
        return "released";
      }
      await store.updateAllocation(q, accountId, next.id, options.leaseMs);
      return "moved";
    });
  }

  async function moveAll(proxyId: string): Promise<{ moved: number; released: number }> {
    let moved = 0;
    let released = 0;
    for (const acc of await store.accountsOn(db, proxyId)) {
      const r = await moveAccount(acc, proxyId);
      if (r === "moved") moved++;
      if (r === "released") released++;
    }
    if (moved + released > 0) log.warn({ proxy_id: proxyId, moved, released }, "accounts moved off proxy");
    return { moved, released };
  }

  const api = {
    /** Sticky, idempotent allocation with a renewable lease; the password only for a `reader` (audited). */
    async allocate(accountId: string, platform: string, preferredCountry: string, preferredProvider: string, reader?: SecretReader): Promise<Proxy> {
      const country = checkCountry("preferred_country", preferredCountry);
      const provider = checkText("preferred_provider", preferredProvider.trim(), 128);
      checkText("platform", platform, 32);
      await requireAccount(accountId);
      for (let attempt = 0; ; attempt++) {
        try {
          return await tx(async (q) => {
            // One allocation per account at a time (any replica): concurrent calls for the same account
            // must not each take a slot, or they use up the last free ones and answer RESOURCE_EXHAUSTED.
            await q.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [ALLOCATE_LOCK, accountId]);
            const cur = await store.allocationOf(q, accountId, true);
            if (cur?.healthy) {
              const expiresAt = await store.updateAllocation(q, accountId, cur.id, options.leaseMs);
              if (reader && cur.password_sealed) await store.insertPasswordAudit(q, accountId, cur.id, reader);
              return toProxy(cur, { expiresAt, withPassword: Boolean(reader) });
            }
            const row = await store.takeSlot(q, { country, provider, exclude: cur?.id ?? "" });
            if (!row) throw new AppError("RESOURCE_EXHAUSTED", "no free healthy proxy in the pool; add proxies (AddProxies) or release some");
            let expiresAt: Date;
            if (cur) {
              await store.freeSlot(q, cur.id);
              expiresAt = await store.updateAllocation(q, accountId, row.id, options.leaseMs);
            } else {
              expiresAt = await store.insertAllocation(q, accountId, row.id, platform, options.leaseMs);
            }
            const note = noteFor(row, country, provider);
            if (note) log.info({ account_id: accountId, proxy_id: row.id }, note);
            if (reader && row.password_sealed) await store.insertPasswordAudit(q, accountId, row.id, reader);
            return toProxy({ ...row }, { expiresAt, note, withPassword: Boolean(reader) });
          });
        } catch (err) {
          // Two calls for one account raced: the loser retries and finds the winner's allocation.
          if (attempt < 3 && sqlState(err) === PgError.uniqueViolation) continue;
          throw err;
        }
      }
    },

    /** Ends an account's allocation; idempotent. */
    async release(accountId: string, proxyId: string): Promise<{ success: boolean; proxyId: string }> {
      checkId(accountId, "account_id");
      if (proxyId && !isId(proxyId)) throw invalidArgument("proxy_id", `must be empty or a 24-hex id, got ${quote(proxyId)}`);
      return tx(async (q) => {
        const held = await store.deleteAllocation(q, accountId, proxyId);
        if (!held) return { success: false, proxyId: "" };
        await store.freeSlot(q, held);
        return { success: true, proxyId: held };
      });
    },

    /** The account's current proxy, NOT_FOUND when it holds none; the password only for a `reader` (audited). */
    async forAccount(accountId: string, reader?: SecretReader): Promise<Proxy> {
      checkId(accountId, "account_id");
      const cur = reader ? await store.allocationOfAudited(db, accountId, reader) : await store.allocationOf(db, accountId);
      if (!cur) throw new AppError("NOT_FOUND", `account ${accountId} holds no proxy; call AllocateProxy first`);
      return toProxy(cur, { expiresAt: cur.expires_at, withPassword: Boolean(reader) });
    },

    /** Moves the account to a different proxy; RESOURCE_EXHAUSTED when no other is free. The password only for a `reader` (audited). */
    async rotate(accountId: string, reason: string, reader?: SecretReader): Promise<Proxy> {
      checkId(accountId, "account_id");
      const out = await tx(async (q) => {
        const cur = await store.allocationOf(q, accountId, true);
        if (!cur) throw new AppError("NOT_FOUND", `account ${accountId} holds no proxy to rotate; call AllocateProxy first`);
        const next = await store.takeSlot(q, { country: cur.country, provider: cur.provider, exclude: cur.id });
        if (!next) throw new AppError("RESOURCE_EXHAUSTED", `no other free healthy proxy to rotate account ${accountId} to; it keeps ${cur.id}`);
        await store.freeSlot(q, cur.id);
        const expiresAt = await store.updateAllocation(q, accountId, next.id, options.leaseMs);
        if (reader && next.password_sealed) await store.insertPasswordAudit(q, accountId, next.id, reader);
        return { next, expiresAt, from: cur.id };
      });
      log.info({ account_id: accountId, from: out.from, to: out.next.id, reason }, "proxy rotated");
      return toProxy(out.next, { expiresAt: out.expiresAt, withPassword: Boolean(reader) });
    },

    /** Really connects through the proxy; records the outcome; takes a failing proxy out of rotation. */
    async checkHealth(proxyId: string, target: string): Promise<ProxyHealth> {
      checkId(proxyId, "proxy_id");
      const t = target || options.checkTarget;
      // Checked before dialing, so a malformed target is the caller's error and never counts against the proxy's health.
      const e = t.length > 261 ? undefined : parseEndpoint(t);
      if (!e) throw invalidArgument("target", `must be host:port like example.com:80, got ${quote(t)}`);
      // Only configured targets: an arbitrary one would make CheckHealth a port scanner of whatever the proxy can reach.
      if (!allowedTargets.has(endpointKey(e))) {
        throw invalidArgument(
          "target",
          `${quote(t)} is not an allowed check target; leave it empty for the default (${options.checkTarget}), name one of ${options.allowedTargets.join(", ")}, or add it to CONVEER_PROXY_CHECK_TARGETS`,
        );
      }
      const row = await store.getProxy(db, proxyId);
      if (!row) throw notFound("proxy", proxyId);
      return api.probe(row, { host: e.host, port: e.port });
    },

    /** Probes one proxy and records the result (used by CheckHealth and the background checker). */
    async probe(row: ProxyRow, target: { host: string; port: number }, signal?: AbortSignal): Promise<ProxyHealth> {
      const password = row.password_sealed ? await vault.open(row.password_sealed, aad(row.id)) : "";
      const res = await probeProxy(
        { protocol: row.protocol as "http" | "https" | "socks5", host: row.host, port: row.port, username: row.username, password },
        target,
        // Checked again at dial time: a name may now resolve elsewhere, and rows added before the policy existed are refused here.
        { timeoutMs: options.checkTimeoutMs, signal, refuseAddress: dialGuard(options.policy, { host: row.host, port: row.port }) },
      );
      const after = await store.recordHealth(db, row.id, res.ok, Math.round(res.latencyMs), res.error, options.failureThreshold);
      if (after && !after.healthy && row.healthy) {
        log.warn({ proxy_id: row.id, failures: after.failures, error: res.error }, "proxy left rotation after failed health checks");
      }
      if (after && !after.healthy) await moveAll(row.id);
      return create(ProxyHealthSchema, {
        proxyId: row.id,
        healthy: res.ok,
        latencyMs: BigInt(Math.round(res.latencyMs)),
        error: res.error,
        checkedAt: timestampFromDate(new Date()),
        target: `${target.host}:${target.port}`,
        consecutiveFailures: after?.failures ?? 0,
      });
    },

    /** Adds proxies; each item succeeds or fails on its own. */
    async add(specs: ProxySpec[]): Promise<{ index: number; proxyId: string; error: string }[]> {
      if (specs.length === 0) throw invalidArgument("proxies", "must hold at least one item");
      if (specs.length > 1000) throw invalidArgument("proxies", `must hold at most 1000 items per call, got ${specs.length}`);
      const results: { index: number; proxyId: string; error: string }[] = [];
      const refused = await policyRefusals(specs);
      await db.transaction(async (q) => {
        for (const [index, spec] of specs.entries()) {
          const prefix = `proxies[${index}]`;
          try {
            const parsed = (() => {
              try {
                return parseProxyUrl(spec.url);
              } catch (err) {
                throw invalidArgument(`${prefix}.url`, (err as Error).message);
              }
            })();
            const refusal = refused.get(index);
            if (refusal) throw refusal;
            // Credentials the dialer could never send are refused now, not at the first health check.
            if (CONTROL.test(parsed.username)) throw invalidArgument(`${prefix}.url`, "username must not contain control characters");
            if (parsed.protocol === "socks5" && (Buffer.byteLength(parsed.username) > 255 || Buffer.byteLength(parsed.password) > 255)) {
              throw invalidArgument(`${prefix}.url`, "SOCKS5 username and password must each be at most 255 bytes");
            }
            if (parsed.protocol !== "socks5" && parsed.username.includes(":")) {
              throw invalidArgument(`${prefix}.url`, 'HTTP proxy username must not contain ":" (Basic auth cannot express it)');
            }
            if (Buffer.byteLength(parsed.username) > 1024 || Buffer.byteLength(parsed.password) > 1024) {
              throw invalidArgument(`${prefix}.url`, "username and password must each be at most 1024 bytes");
            }
            const country = checkCountry(`${prefix}.country`, spec.country);
            const provider = checkText(`${prefix}.provider`, spec.provider.trim(), 128);
            const tags = [...new Set(spec.tags.map((t, i) => checkText(`${prefix}.tags[${i}]`, t.trim(), 64)).filter((t) => t !== ""))];
            if (tags.length > MAX_TAGS) throw invalidArgument(`${prefix}.tags`, `must hold at most ${MAX_TAGS} tags, got ${tags.length}`);
            if (spec.capacity < 0 || spec.capacity > 10_000) throw invalidArgument(`${prefix}.capacity`, `must be between 1 and 10000 (0 means 1), got ${spec.capacity}`);
            const id = newId();
            const sealed = parsed.password ? vault.seal(parsed.password, aad(id)) : { sealed: "", keyId: "" };
            await q.query("SAVEPOINT item");
            try {
              await store.insertProxy(q, {
                id,
                protocol: parsed.protocol,
                host: parsed.host,
                port: parsed.port,
                username: parsed.username,
                password_sealed: sealed.sealed,
                key_id: sealed.keyId,
                country,
                provider,
                tags,
                capacity: spec.capacity || 1,
              });
              await q.query("RELEASE SAVEPOINT item");
            } catch (err) {
              await q.query("ROLLBACK TO SAVEPOINT item");
              if (sqlState(err) === PgError.uniqueViolation) throw new AppError("ALREADY_EXISTS", `${prefix}: ${parsed.protocol}://${parsed.host}:${parsed.port} with this username is already in the pool`);
              throw err;
            }
            results.push({ index, proxyId: id, error: "" });
          } catch (err) {
            if (!(err instanceof AppError)) throw err;
            results.push({ index, proxyId: "", error: err.message });
          }
        }
      });
      return results;
    },

    /** A keyset page of the pool (no passwords). */
    async list(country: string, provider: string, size: number, token: string): Promise<{ proxies: Proxy[]; next: string; total: number }> {
      const limit = pageSize(size);
      const filter = { country: checkCountry("country", country), provider: checkText("provider", provider.trim(), 128) };
      const after = decodePageToken(token, filter);
      const [rows, total] = await Promise.all([store.listProxies(db, filter, after, limit + 1), store.countProxies(db, filter)]);
      const page = rows.slice(0, limit);
      return {
        proxies: await Promise.all(page.map((r) => toProxy(r, { withPassword: false }))),
        next: rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "",
        total,
      };
    },

    /** Takes a proxy out of the pool, moving its accounts first. */
    async remove(proxyId: string): Promise<{ moved: number; released: number }> {
      checkId(proxyId, "proxy_id");
      const row = await store.getProxy(db, proxyId);
      if (!row) throw notFound("proxy", proxyId);
      // Out of rotation first, so no new allocation lands on it while its accounts move.
      await db.query("UPDATE proxies SET healthy = false WHERE id = $1", [proxyId]);
      const moved = await moveAll(proxyId);
      await tx(async (q) => {
        // Locked first: an allocator that picked it meanwhile waits, then finds it gone and picks another.
        if (!(await store.getProxy(q, proxyId, true))) return;
        for (const acc of await store.accountsOn(q, proxyId)) {
          await store.deleteAllocation(q, acc, proxyId);
          moved.released++;
        }
        await store.deleteProxy(q, proxyId);
      });
      return moved;
    },

    /** Releases allocations whose lease ran out; returns how many. */
    async sweepExpired(): Promise<number> {
      let n = 0;
      for (const acc of await store.expiredAllocations(db, 500)) {
        const done = await tx(async (q) => {
          const held = await q.query<{ proxy_id: string }>("DELETE FROM proxy_allocations WHERE account_id = $1 AND expires_at < now() RETURNING proxy_id", [acc]);
          if (held.rows[0]) await store.freeSlot(q, held.rows[0].proxy_id);
          return held.rowCount;
        });
        n += done;
      }
      return n;
    },
  };
  return api;
}

/** The proxy pool's API. */
export type Proxies = ReturnType<typeof createProxies>;
