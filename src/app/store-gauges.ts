import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { countsByPlatformStatus } from "../accounts/account-store.ts";
import { poolCounts } from "../proxies/proxy-store.ts";
import type { Metrics, Sample } from "../server/metrics.ts";
import type { Queryable } from "../store/db.ts";
import type { SmsProvider } from "../sms/provider.ts";
import type { Clock } from "../warming/clock.ts";
import type { Warming } from "../warming/warming.ts";
import { TaskStatus, dueCount, taskCounts } from "../warming/warming-store.ts";

/**
 * The gauges of /metrics, registered by the mount of the service they describe. Those read from
 * the store are computed at each scrape from trigger-kept count tables (a few rows whatever the
 * number of accounts, proxies or tasks) and read the same on every replica: aggregate them with
 * max by (...). Those about this process (worker in flight, event subscribers) add up: sum.
 */

/** The due-actions gauge counts at most this many (a bounded scan however large the backlog). */
export const DUE_ACTIONS_CAP = 100_000;

const lower = (name: string | undefined) => (name ?? "unspecified").toLowerCase();

/** conveer_accounts{platform,status}. */
export function accountGauges(metrics: Metrics, db: Queryable): void {
  metrics.addGauge("conveer_accounts", "Accounts by platform and status (store-read: the same on every replica)", ["platform", "status"], async () =>
    (await countsByPlatformStatus(db)).map((r) => ({ labels: { platform: r.platform, status: lower(AccountStatus[r.status]) }, value: r.n })),
  );
}

/** conveer_proxies{state} (healthy, unhealthy) and conveer_proxy_slots{state} (used, free: of healthy proxies). */
export function proxyGauges(metrics: Metrics, db: Queryable): void {
  metrics.addGauge("conveer_proxies", "Proxies in the pool by health: healthy, unhealthy (store-read)", ["state"], async () => {
    const rows = await poolCounts(db);
    const n = (healthy: boolean) => rows.find((r) => r.healthy === healthy)?.n ?? 0;
    return [
      { labels: { state: "healthy" }, value: n(true) },
      { labels: { state: "unhealthy" }, value: n(false) },
    ];
  });
  metrics.addGauge("conveer_proxy_slots", "Account slots (capacity) of healthy proxies: used (allocated) and free (store-read)", ["state"], async () => {
    const h = (await poolCounts(db)).find((r) => r.healthy);
    return [
      { labels: { state: "used" }, value: h?.allocated ?? 0 },
      { labels: { state: "free" }, value: Math.max(0, (h?.capacity ?? 0) - (h?.allocated ?? 0)) },
    ];
  });
}

/** The warming gauges and this process's worker counters. */
export function warmingGauges(metrics: Metrics, db: Queryable, warming: Warming, clock: Clock): void {
  const names = Object.fromEntries(Object.entries(TaskStatus).map(([k, v]) => [v, lower(k)]));
  metrics.addGauge("conveer_warming_tasks", "Warming tasks by status (store-read)", ["status"], async () =>
    (await taskCounts(db)).map((r) => ({ labels: { status: names[r.status] ?? String(r.status) }, value: r.n })),
  );
  metrics.addGauge(
    "conveer_warming_due_actions",
    `Warming actions due now and not yet claimed (one per RUNNING task at most; counted up to ${DUE_ACTIONS_CAP}; store-read)`,
    [],
    async () => [{ labels: {}, value: await dueCount(db, new Date(clock.now()), DUE_ACTIONS_CAP) }],
  );
  metrics.addGauge("conveer_event_subscribers", "StreamEvents streams attached to this process", [], () => [{ labels: {}, value: warming.hub.subscriberCount() }]);
  metrics.addGauge("conveer_warming_worker_in_flight", "Warming actions this process's worker has claimed and not yet recorded", [], () => [{ labels: {}, value: warming.workerStats().inFlight }]);
  metrics.addCounter(
    "conveer_warming_worker_actions_total",
    "Warming actions this process's worker claimed, recorded, and dropped (its claim had lapsed and another worker took the action over)",
    ["state"],
    () => {
      const s = warming.workerStats();
      return [
        { labels: { state: "claimed" }, value: s.claimed },
        { labels: { state: "recorded" }, value: s.recorded },
        { labels: { state: "dropped" }, value: s.dropped },
      ];
    },
  );
}

/**
 * conveer_sms_balance{provider}, in each provider's own currency (the sandbox provider's: RUB).
 * Asked of the provider at scrape, given at most timeoutMs; a provider that does not answer in
 * time shows its last known balance (none before the first answer).
 */
export function smsGauges(metrics: Metrics, providers: readonly SmsProvider[], timeoutMs = 250): void {
  const known = new Map<string, number>();
  const ask = async (p: SmsProvider): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    await Promise.race([p.balance().then((b) => void known.set(p.name, b), () => {}), late]);
    clearTimeout(timer);
  };
  metrics.addGauge("conveer_sms_balance", "Balance at each SMS provider, in the provider's currency (the sandbox provider: RUB)", ["provider"], async () => {
    await Promise.all(providers.map(ask));
    return providers.filter((p) => known.has(p.name)).map((p): Sample => ({ labels: { provider: p.name }, value: known.get(p.name)! }));
  });
}
