/**
 * The scrape time of /metrics at 1,000,000 accounts on PostgreSQL: a real system (account, proxy
 * and warming services; the worker off, so nothing changes under the scrape) over a store seeded
 * by bulk SQL with 1,000,000 accounts, 100,000 proxies and 200,000 warming tasks (10,000 of them
 * due), beside a baseline measured in the same run: the same HTTP server and process metrics with
 * no service mounted, so no gauge reads the store. Scrapes alternate between the two.
 *
 *   CONVEER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node bench/metrics-scrape.ts
 *
 * Knobs: BENCH_SCRAPE_ACCOUNTS (1000000), BENCH_SCRAPES (200). Goal: median under 100 ms.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { startApp } from "../src/app.ts";
import type { App } from "../src/app.ts";
import { SERVICE_NAMES, loadConfig } from "../src/config/config.ts";
import type { ServiceName } from "../src/config/config.ts";
import { PLATFORMS } from "../src/domain.ts";
import type { Db } from "../src/store/db.ts";
import { openStore } from "../src/store/open.ts";
import { envInt, fmt, median, quantile, table } from "./stats.ts";
import { createBenchDatabase, postgresBaseUrl } from "./system.ts";

const ACCOUNTS = envInt("BENCH_SCRAPE_ACCOUNTS", 1_000_000);
const PROXIES = Math.max(1, Math.round(ACCOUNTS / 10));
const TASKS = Math.max(1, Math.round(ACCOUNTS / 5));
const DUE = Math.round(TASKS / 20);
const SCRAPES = envInt("BENCH_SCRAPES", 200);

/** Bulk rows: accounts over every platform and a few statuses, proxies half allocated, tasks in every status. */
async function seed(db: Db): Promise<void> {
  const platforms = [...PLATFORMS];
  for (let start = 0; start < ACCOUNTS; start += 200_000) {
    const n = Math.min(200_000, ACCOUNTS - start);
    await db.query(
      `INSERT INTO accounts (id, platform, login, status, secrets, key_id)
       SELECT lpad(to_hex(i), 24, '0'), ($3::text[])[1 + i % cardinality($3::text[])], 'bench-' || i, (ARRAY[2, 2, 2, 3, 5])[1 + i % 5], 'sealed', 'k'
       FROM generate_series($1::int, $1::int + $2::int - 1) AS i`,
      [start, n, platforms],
    );
  }
  await db.query(
    `INSERT INTO proxies (id, protocol, host, port, capacity, allocated, healthy)
     SELECT 'f' || lpad(to_hex(i), 23, '0'), 'http', 'p' || i || '.example', 8080, 10, i % 11, i % 50 <> 0
     FROM generate_series(0, $1::int - 1) AS i`,
    [PROXIES],
  );
  await db.query(
    `INSERT INTO warming_tasks (id, account_id, platform, scenario_id, status, total_days, total_actions, day1_at, started_at)
     SELECT 'e' || lpad(to_hex(i), 23, '0'), lpad(to_hex(i), 24, '0'), 'vk', 'basic', CASE WHEN i < $2 THEN 2 ELSE (ARRAY[2, 4, 4, 5, 6])[1 + i % 5] END, 14, 300, now(), now()
     FROM generate_series(0, $1::int - 1) AS i`,
    [TASKS, DUE],
  );
  // Their queue rows: the DUE first due now, every fifth other RUNNING one tomorrow.
  await db.query(
    `INSERT INTO warming_due (task_id, seq, run_at)
     SELECT 'e' || lpad(to_hex(i), 23, '0'), 0, CASE WHEN i < $2 THEN now() - interval '1 minute' ELSE now() + interval '1 day' END
     FROM generate_series(0, $1::int - 1) AS i WHERE i < $2 OR i % 5 = 0`,
    [TASKS, DUE],
  );
  await db.query("ANALYZE");
}

async function start(db: Db, services: ServiceName[], dataDir: string): Promise<App> {
  const env: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "42".repeat(32), CONVEER_WARMING_WORKER: "0", DATABASE_URL: "postgres://unused" };
  for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
  return startApp({ config: loadConfig(env), services, db, log: pino({ level: "silent" }) });
}

async function scrapeMs(port: number): Promise<{ ms: number; body: string }> {
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  const body = await r.text();
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return { ms: performance.now() - t0, body };
}

const base = postgresBaseUrl();
if (!base) {
  console.log("bench/metrics-scrape.ts: set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL (the goal is stated for PostgreSQL); skipped");
} else {
  const bench = await createBenchDatabase(base);
  const dirs: string[] = [];
  const apps: App[] = [];
  const log = pino({ level: "warn" });
  // Two pools on one database: each app closes the store it is given.
  // Seeding runs statements longer than the default 10 s query timeout.
  const storeConfig = { databaseUrl: bench.url, dataDir: "", db: { poolSize: 10, connectTimeoutMs: 2000, queryTimeoutMs: 600_000, poolWaitMs: 30_000 } };
  const [db, bareDb] = [await openStore(storeConfig, log), await openStore(storeConfig, log)];
  try {
    const t0 = performance.now();
    await seed(db);
    const seedMs = performance.now() - t0;
    dirs.push(await mkdtemp(join(tmpdir(), "conveer-bench-scrape-")), await mkdtemp(join(tmpdir(), "conveer-bench-scrape-")));
    const full = await start(db, ["account", "proxy", "warming"], dirs[0]);
    apps.push(full);
    const bare = await start(bareDb, [], dirs[1]);
    apps.push(bare);
    // Warm-up: prepared statements, JIT.
    for (let i = 0; i < 10; i++) await Promise.all([scrapeMs(full.httpPort), scrapeMs(bare.httpPort)]);
    const withGauges: number[] = [];
    const baseline: number[] = [];
    let body = "";
    for (let i = 0; i < SCRAPES; i++) {
      const a = await scrapeMs(full.httpPort);
      withGauges.push(a.ms);
      body = a.body;
      baseline.push((await scrapeMs(bare.httpPort)).ms);
    }
    const accounts = [...body.matchAll(/^conveer_accounts\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
    const due = /^conveer_warming_due_actions (\d+)/m.exec(body)?.[1];
    console.log(`bench/metrics-scrape.ts: PostgreSQL, ${fmt(ACCOUNTS)} accounts, ${fmt(PROXIES)} proxies, ${fmt(TASKS)} warming tasks (${fmt(DUE)} due); seeded in ${fmt(seedMs / 1000, 1)} s; ${SCRAPES} scrapes each, alternating`);
    console.log(`  the scrape read conveer_accounts summing to ${fmt(accounts)} and conveer_warming_due_actions ${due}`);
    const mw = median(withGauges);
    const mb = median(baseline);
    console.log(
      table([
        ["/metrics", "median ms", "p99 ms", "ratio"],
        ["baseline (no store gauges)", fmt(mb, 2), fmt(quantile(baseline, 0.99), 2), "1.00"],
        ["every gauge (store-read)", fmt(mw, 2), fmt(quantile(withGauges, 0.99), 2), fmt(mw / mb, 2)],
      ]),
    );
    console.log(`  goal: median under 100 ms at 1,000,000 accounts; here, at ${fmt(ACCOUNTS)}: ${fmt(mw, 2)} ms (${mw < 100 ? "under" : "OVER"})`);
    if (accounts !== ACCOUNTS) throw new Error(`conveer_accounts summed to ${accounts}, expected ${ACCOUNTS}`);
  } finally {
    for (const a of apps) await a.stop(1000);
    await db.close().catch(() => {});
    await bareDb.close().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    await bench.drop();
  }
}
