import { recordAudit } from "../audit/audit-log.ts";
import type { Actor } from "../audit/audit-log.ts";
import { ProxyAllocationFilter, ProxyHealthFilter } from "../gen/conveer/v1/proxy_pb.js";
import type { Proxy, ProxySpec } from "../gen/conveer/v1/proxy_pb.js";
import { AppError, invalidArgument, notFound } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import { checkId } from "../store/ids.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import { inSavepoint } from "../store/savepoint.ts";
import { checkEndpoint } from "./address-policy.ts";
import type { LookupAll } from "./address-policy.ts";
import { moveAll } from "./allocation.ts";
import { aad, toProxy, transact } from "./proxies-context.ts";
import type { ProxiesContext } from "./proxies-context.ts";
import { checkCountry, checkSpec, checkText, parseSpecUrl } from "./proxy-fields.ts";
import * as store from "./proxy-store.ts";
import type { ProxyFilter } from "./proxy-store.ts";
import { parseProxyUrl } from "./proxy-url.ts";

/** The pool's administration: add proxies (under the address policy), list them, remove one. */

/**
 * The address policy's verdict on each item's proxy host, before the insert transaction opens:
 * names are resolved (each distinct name once, a few at a time) and every address must pass.
 * Items whose URL does not parse are left to the per-item validation.
 */
async function policyRefusals(ctx: ProxiesContext, specs: ProxySpec[]): Promise<Map<number, AppError>> {
  const out = new Map<number, AppError>();
  const { policy } = ctx.opts;
  if (policy.allowPrivate) return out;
  const resolved = new Map<string, Promise<string[]>>();
  const once: LookupAll = (host) => {
    let p = resolved.get(host);
    if (!p) resolved.set(host, (p = ctx.lookup(host)));
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
        await checkEndpoint(policy, "proxy host", parsed, once);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        out.set(index, new AppError(err.code, `proxies[${index}].url ${err.message}`));
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

/** Adds proxies; each item succeeds or fails on its own. */
export async function addProxies(ctx: ProxiesContext, specs: ProxySpec[], who: Actor): Promise<{ index: number; proxyId: string; error: string }[]> {
  if (specs.length === 0) throw invalidArgument("proxies", "must hold at least one item");
  if (specs.length > 1000) throw invalidArgument("proxies", `must hold at most 1000 items per call, got ${specs.length}`);
  const results: { index: number; proxyId: string; error: string }[] = [];
  const refused = await policyRefusals(ctx, specs);
  await ctx.db.transaction(async (q) => {
    for (const [index, spec] of specs.entries()) {
      try {
        const parsed = parseSpecUrl(index, spec);
        const refusal = refused.get(index);
        if (refusal) throw refusal;
        const item = checkSpec(index, spec, parsed);
        const id = ctx.newId();
        const sealed = item.password ? ctx.vault.seal(item.password, aad(id)) : { sealed: "", keyId: "" };
        try {
          await inSavepoint(q, () =>
            store.insertProxy(q, {
              id,
              protocol: item.protocol,
              host: item.host,
              port: item.port,
              username: item.username,
              password_sealed: sealed.sealed,
              key_id: sealed.keyId,
              country: item.country,
              provider: item.provider,
              tags: item.tags,
              capacity: item.capacity,
            }),
          );
          await recordAudit(q, who, { action: "proxy.add", target: id, detail: `${item.protocol}://${item.host}:${item.port}, capacity ${item.capacity}${item.tags.length ? `, tags ${item.tags.join(";")}` : ""}` });
        } catch (err) {
          if (sqlState(err) === PgError.uniqueViolation) throw new AppError("ALREADY_EXISTS", `proxies[${index}]: ${item.protocol}://${item.host}:${item.port} with this username is already in the pool`);
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
}

/** ListProxies' request fields. */
export type ProxyQuery = { country: string; provider: string; health: ProxyHealthFilter; tag: string; allocation: ProxyAllocationFilter; pageSize: number; pageToken: string };

/** A keyset page of the pool (no passwords), each proxy with the accounts holding it. */
export async function listProxies(ctx: ProxiesContext, q: ProxyQuery): Promise<{ proxies: Proxy[]; next: string; total: number }> {
  const limit = pageSize(q.pageSize);
  if (!(q.health in ProxyHealthFilter)) throw invalidArgument("health", `is not a known ProxyHealthFilter (${q.health})`);
  if (!(q.allocation in ProxyAllocationFilter)) throw invalidArgument("allocation", `is not a known ProxyAllocationFilter (${q.allocation})`);
  const filter: ProxyFilter = {
    country: checkCountry("country", q.country),
    provider: checkText("provider", q.provider.trim(), 128),
    healthy: q.health === ProxyHealthFilter.UNSPECIFIED ? undefined : q.health === ProxyHealthFilter.HEALTHY,
    tag: checkText("tag", q.tag.trim(), 64),
    allocated: q.allocation === ProxyAllocationFilter.UNSPECIFIED ? undefined : q.allocation === ProxyAllocationFilter.ALLOCATED,
  };
  const after = decodePageToken(q.pageToken, filter);
  const [rows, total] = await Promise.all([store.listProxies(ctx.db, filter, after, limit + 1), store.countProxies(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const proxies = await Promise.all(
    page.map(async (r) => {
      const p = await toProxy(ctx, r, { withPassword: false });
      p.accountIds = r.account_ids;
      return p;
    }),
  );
  return { proxies, next: rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "", total };
}

/** Takes a proxy out of the pool, moving its accounts first. */
export async function removeProxy(ctx: ProxiesContext, proxyId: string, who: Actor): Promise<{ moved: number; released: number }> {
  checkId(proxyId, "proxy_id");
  const row = await store.getProxy(ctx.db, proxyId);
  if (!row) throw notFound("proxy", proxyId);
  // Out of rotation first, so no new allocation lands on it while its accounts move.
  await store.markUnhealthy(ctx.db, proxyId);
  const moved = await moveAll(ctx, proxyId);
  await transact(ctx, async (q) => {
    // Locked first: an allocator that picked it meanwhile waits, then finds it gone and picks another.
    if (!(await store.lockProxy(q, proxyId))) return;
    for (const acc of await store.accountsOn(q, proxyId)) {
      await store.deleteAllocation(q, acc, proxyId);
      moved.released++;
    }
    await store.deleteProxy(q, proxyId);
    await recordAudit(q, who, { action: "proxy.remove", target: proxyId, detail: `${row.protocol}://${row.host}:${row.port}; accounts moved ${moved.moved}, released ${moved.released}` });
  });
  return moved;
}
