import type { Logger } from "pino";
import type { Db } from "../store/db.ts";
import type { Proxies } from "./proxies.ts";
import { claimDueChecks } from "./proxy-store.ts";

/** Options of the background checker. */
export type HealthCheckerOptions = { db: Db; proxies: Proxies; log: Logger; intervalMs: number; target: string; concurrency?: number };

/**
 * Checks every proxy once per interval and sweeps expired leases. Due proxies are claimed with
 * SKIP LOCKED, so replicas share the checks instead of repeating them.
 */
export function createHealthChecker(opts: HealthCheckerOptions) {
  const ac = new AbortController();
  const tickMs = Math.max(50, Math.min(opts.intervalMs / 4, 5000));
  const [host, port] = (() => {
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(opts.target)!;
    return [m[1].replace(/^\[|\]$/g, ""), Number(m[2])] as const;
  })();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function tick(): Promise<void> {
    const due = await claimDueChecks(opts.db, opts.concurrency ?? 16, opts.intervalMs);
    await Promise.all(due.map((row) => opts.proxies.probe(row, { host, port }, ac.signal).catch((err) => opts.log.warn({ err, proxy_id: row.id }, "health check failed to record"))));
    const swept = await opts.proxies.sweepExpired();
    if (swept) opts.log.info({ released: swept }, "released allocations whose lease expired");
  }

  function schedule(): void {
    if (ac.signal.aborted) return;
    timer = setTimeout(() => {
      running = tick()
        .catch((err) => opts.log.warn({ err: String(err) }, "proxy health tick failed; retrying next tick"))
        .finally(() => {
          running = undefined;
          schedule();
        });
    }, tickMs);
  }

  return {
    start(): void {
      schedule();
    },
    async stop(): Promise<void> {
      ac.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
