import type { HandlerContext } from "@connectrpc/connect";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { grants } from "../auth/scopes.ts";
import { bindService, peerKey, principalOf } from "../server/service-binding.ts";
import type { Actor } from "../audit/audit-log.ts";
import type { Proxies } from "./proxies.ts";
import type { SecretReader } from "./proxy-store.ts";

/**
 * The caller as a reader of proxy passwords when it holds `proxies:secrets` (or `*`: the
 * system's own services, and open mode); otherwise undefined, and answers carry no password.
 */
function secretReader(ctx: HandlerContext): SecretReader | undefined {
  const p = principalOf(ctx);
  return grants(p.scopes, "proxies:secrets") ? { tokenName: p.name, peer: ctx.values.get(peerKey) } : undefined;
}

/** The caller as the audit log names it: the token's name and its address. */
function actorOf(ctx: HandlerContext): Actor {
  return { name: principalOf(ctx).name, peer: ctx.values.get(peerKey) };
}

/** ProxyService over the pool: validate, call, map. Proxy passwords go only to proxies:secrets holders, and each such read is audited. */
export function proxyService(proxies: Proxies) {
  return bindService({
    service: ProxyService,
    scopes: {
      allocateProxy: "proxies:write",
      releaseProxy: "proxies:write",
      getProxyForAccount: "proxies:read",
      // Not read-only: it records the outcome, and failures take the proxy out of rotation and move its accounts.
      checkHealth: "proxies:write",
      forceRotate: "proxies:write",
      addProxies: "proxies:admin",
      listProxies: "proxies:read",
      removeProxy: "proxies:admin",
    },
    impl: {
      allocateProxy: (r, ctx) => proxies.allocate(r.accountId, r.platform, r.preferredCountry, r.preferredProvider, secretReader(ctx)),
      releaseProxy: (r) => proxies.release(r.accountId, r.proxyId),
      getProxyForAccount: (r, ctx) => proxies.forAccount(r.accountId, secretReader(ctx)),
      checkHealth: (r) => proxies.checkHealth(r.proxyId, r.target),
      forceRotate: (r, ctx) => proxies.rotate(r.accountId, r.reason, secretReader(ctx)),
      async addProxies(r, ctx) {
        const results = await proxies.add(r.proxies, actorOf(ctx));
        const added = results.filter((x) => x.proxyId).length;
        return { results, added, failed: results.length - added };
      },
      async listProxies(r) {
        const page = await proxies.list(r);
        return { proxies: page.proxies, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
      async removeProxy(r, ctx) {
        const out = await proxies.remove(r.proxyId, actorOf(ctx));
        return { success: true, accountsMoved: out.moved, accountsReleased: out.released };
      },
    },
  });
}
