import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ProxyHealthSchema } from "../gen/conveer/v1/proxy_pb.js";
import type { ProxyHealth } from "../gen/conveer/v1/proxy_pb.js";
import { invalidArgument, notFound, quote } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { dialGuard, endpointKey, parseEndpoint } from "./address-policy.ts";
import { moveAll } from "./allocation.ts";
import { aad } from "./proxies-context.ts";
import type { ProxiesContext } from "./proxies-context.ts";
import { probeProxy } from "./proxy-dial.ts";
import * as store from "./proxy-store.ts";
import type { ProxyRow } from "./proxy-store.ts";

/** Health of the pool's proxies: CheckHealth and the background checker really connect through a proxy and record the outcome. */

/** Really connects through the proxy; records the outcome; takes a failing proxy out of rotation. */
export async function checkHealth(ctx: ProxiesContext, proxyId: string, target: string): Promise<ProxyHealth> {
  checkId(proxyId, "proxy_id");
  const { opts } = ctx;
  const t = target || opts.checkTarget;
  // Checked before dialing, so a malformed target is the caller's error and never counts against the proxy's health.
  const e = t.length > 261 ? undefined : parseEndpoint(t);
  if (!e) throw invalidArgument("target", `must be host:port like example.com:80, got ${quote(t)}`);
  // Only configured targets: an arbitrary one would make CheckHealth a port scanner of whatever the proxy can reach.
  if (!ctx.allowedTargets.has(endpointKey(e))) {
    throw invalidArgument(
      "target",
      `${quote(t)} is not an allowed check target; leave it empty for the default (${opts.checkTarget}), name one of ${opts.allowedTargets.join(", ")}, or add it to CONVEER_PROXY_CHECK_TARGETS`,
    );
  }
  const row = await store.getProxy(ctx.db, proxyId);
  if (!row) throw notFound("proxy", proxyId);
  return probe(ctx, row, { host: e.host, port: e.port });
}

/** Probes one proxy and records the result (used by CheckHealth and the background checker); a proxy that leaves rotation loses its accounts. */
export async function probe(ctx: ProxiesContext, row: ProxyRow, target: { host: string; port: number }, signal?: AbortSignal): Promise<ProxyHealth> {
  const { opts } = ctx;
  const password = row.password_sealed ? await ctx.vault.open(row.password_sealed, aad(row.id)) : "";
  const res = await probeProxy(
    { protocol: row.protocol as "http" | "https" | "socks5", host: row.host, port: row.port, username: row.username, password },
    target,
    // Checked again at dial time: a name may now resolve elsewhere, and rows added before the policy existed are refused here.
    { timeoutMs: opts.checkTimeoutMs, signal, refuseAddress: dialGuard(opts.policy, { host: row.host, port: row.port }) },
  );
  const after = await store.recordHealth(ctx.db, row.id, res.ok, Math.round(res.latencyMs), res.error, opts.failureThreshold);
  if (after && !after.healthy && row.healthy) {
    ctx.log.warn({ proxy_id: row.id, failures: after.failures, error: res.error }, "proxy left rotation after failed health checks");
  }
  if (after && !after.healthy) await moveAll(ctx, row.id);
  return create(ProxyHealthSchema, {
    proxyId: row.id,
    healthy: res.ok,
    latencyMs: BigInt(Math.round(res.latencyMs)),
    error: res.error,
    checkedAt: timestampFromDate(new Date()),
    target: `${target.host}:${target.port}`,
    consecutiveFailures: after?.failures ?? 0,
  });
}
