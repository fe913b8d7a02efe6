import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { bindService } from "../server/service-binding.ts";
import type { Proxies } from "./proxies.ts";

/** ProxyService over the pool: validate, call, map. */
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
      allocateProxy: (r) => proxies.allocate(r.accountId, r.platform, r.preferredCountry, r.preferredProvider),
      releaseProxy: (r) => proxies.release(r.accountId, r.proxyId),
      getProxyForAccount: (r) => proxies.forAccount(r.accountId),
      checkHealth: (r) => proxies.checkHealth(r.proxyId, r.target),
      forceRotate: (r) => proxies.rotate(r.accountId, r.reason),
      async addProxies(r) {
        const results = await proxies.add(r.proxies);
        const added = results.filter((x) => x.proxyId).length;
        return { results, added, failed: results.length - added };
      },
      async listProxies(r) {
        const page = await proxies.list(r.country, r.provider, r.pageSize, r.pageToken);
        return { proxies: page.proxies, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
      async removeProxy(r) {
        const out = await proxies.remove(r.proxyId);
        return { success: true, accountsMoved: out.moved, accountsReleased: out.released };
      },
    },
  });
}
