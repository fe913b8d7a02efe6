/**
 * The real system for the benchmark: startApp (account + proxy services, silent log) on a fresh
 * store (PGlite in a temporary data directory, or a new PostgreSQL database created for the run),
 * seeded with accounts (bulk SQL, secrets sealed by the real vault) and proxies (the real
 * AddProxies RPC).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { startApp } from "../src/app.ts";
import type { App } from "../src/app.ts";
import { SERVICE_NAMES, loadConfig } from "../src/config/config.ts";
import { PLATFORMS } from "../src/domain.ts";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import type { Db } from "../src/store/db.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { openStore } from "../src/store/open.ts";
import { loadMasterKey } from "../src/vault/master-key.ts";
import { createVault } from "../src/vault/vault.ts";

export type StoreKind = "pglite" | "postgres";

/** A started, seeded system. */
export type BenchSystem = {
  kind: StoreKind;
  app: App;
  db: Db;
  accountAddr: string;
  proxyAddr: string;
  /** The seeded account ids. */
  ids: string[];
  /** Seeding time per part, in ms. */
  seedMs: { accounts: number; proxies: number; vacuum: number };
  /** The database URL (postgres only). */
  url: string;
  stop(): Promise<void>;
};

const MASTER_KEY = "42".repeat(32);

/** The PostgreSQL server to create the bench database on, if any. */
export function postgresBaseUrl(): string {
  return process.env.BENCH_DATABASE_URL || process.env.CONVEER_TEST_DATABASE_URL || "";
}

/** A new, empty PostgreSQL database on base's server for one benchmark run; drop() removes it. */
export async function createBenchDatabase(base: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `conveer_bench_${randomBytes(5).toString("hex")}`;
  await adminQuery(base, `CREATE DATABASE ${name}`);
  return { url: withDb(base, name), drop: () => adminQuery(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function adminQuery(base: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Starts and seeds the system on a fresh store of the given kind. */
export async function startBenchSystem(kind: StoreKind, opts: { accounts: number; proxies: number; log: (s: string) => void }): Promise<BenchSystem> {
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err) => opts.log(`cleanup error: ${String(err)}`));
  };
  try {
    const dataDir = await mkdtemp(join(tmpdir(), "conveer-bench-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    let url = "";
    if (kind === "postgres") {
      const base = postgresBaseUrl();
      if (!base) throw new Error("set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL to benchmark PostgreSQL");
      const created = await createBenchDatabase(base);
      cleanups.push(created.drop);
      url = created.url;
    }
    const env: Record<string, string> = {
      CONVEER_DATA_DIR: dataDir,
      CONVEER_HTTP_ADDR: "127.0.0.1:0",
      CONVEER_MASTER_KEY: MASTER_KEY,
      CONVEER_LOG_LEVEL: "silent",
      // The pool's fake proxies are never really checked during the run (see below).
      CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000",
    };
    if (url) env.DATABASE_URL = url;
    for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
    const config = loadConfig(env);
    const log = pino({ level: "silent" });
    // The production opener (PGlite on disk in the data dir, or a pg pool of the default size),
    // opened here so the benchmark can seed through the same store; startApp closes it on stop.
    const db = await openStore(config, log);
    let app: App;
    try {
      app = await startApp({ config, services: ["account", "proxy"], db, log });
    } catch (err) {
      // startApp closes the store it was given when it fails; closing again is harmless.
      await db.close().catch(() => {});
      throw err;
    }
    cleanups.push(() => app.stop(1000));
    const accountAddr = `127.0.0.1:${app.ports.account}`;
    const proxyAddr = `127.0.0.1:${app.ports.proxy}`;

    // Proxies first, through the real RPC, then pushed out of the background checker's way:
    // they point at 198.18.0.0/15 (benchmarking addresses) and no probe should run mid-measure.
    let t = performance.now();
    const proxiesClient = remoteClient(ProxyService, { addr: proxyAddr });
    for (let done = 0; done < opts.proxies; ) {
      const n = Math.min(1000, opts.proxies - done);
      const specs = Array.from({ length: n }, (_, k) => {
        const i = done + k;
        return {
          url: `socks5://bench${i}:pw-${randomBytes(6).toString("hex")}@198.18.${(i >> 8) & 0xff}.${i & 0xff}:1080`,
          country: ["RU", "KZ", "DE", "NL"][i % 4],
          provider: `provider-${i % 8}`,
          tags: ["bench"],
          capacity: 1,
        };
      });
      const r = await proxiesClient.addProxies({ proxies: specs });
      if (r.failed > 0) throw new Error(`AddProxies rejected ${r.failed} proxies: ${r.results.find((x) => x.error)?.error}`);
      done += n;
    }
    await db.query("UPDATE proxies SET next_check_at = now() + interval '1 day'");
    const proxiesMs = performance.now() - t;

    // Accounts: bulk INSERT … SELECT over unnest'ed arrays, each row's secrets sealed by the real
    // vault with the row's aad (account:<id>), exactly as CreateAccount stores them (the schema's
    // own triggers keep the per-platform totals); each account also gets its "created" history entry.
    t = performance.now();
    const vault = await createVault(db, await loadMasterKey(config, log, db), createIdGenerator());
    const newId = createIdGenerator();
    const ids: string[] = [];
    const batch = 10_000;
    try {
      for (let start = 0; start < opts.accounts; start += batch) {
        const n = Math.min(batch, opts.accounts - start);
        const bIds: string[] = [];
        const bSecrets: string[] = [];
        let keyId = "";
        for (let k = 0; k < n; k++) {
          const id = newId();
          const i = start + k;
          const secrets = { password: `pw-${i}-${randomBytes(6).toString("hex")}`, phone: `+7999${String(i).padStart(7, "0")}`, additional: { recovery_email: `bench${i}@example.com` } };
          const s = vault.seal(JSON.stringify(secrets), `account:${id}`);
          keyId = s.keyId;
          bIds.push(id);
          bSecrets.push(s.sealed);
        }
        await db.query(
          `INSERT INTO accounts (id, platform, login, status, status_reason, secrets, key_id, has_phone, labels)
           SELECT t.id, ($5::text[])[1 + (($3::int + t.n::int) % cardinality($5::text[]))], 'bench-user-' || ($3::int + t.n::int), $6::smallint, 'created',
                  t.secrets, $4, true, '{"source":"bench"}'::jsonb
           FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(id, secrets, n)`,
          [bIds, bSecrets, start, keyId, [...PLATFORMS], AccountStatus.ACTIVE],
        );
        ids.push(...bIds);
      }
    } finally {
      await vault.stop();
    }
    await db.query(
      "INSERT INTO account_status_history (account_id, from_status, to_status, reason, author) SELECT id, NULL, status, 'created', 'bench' FROM accounts ORDER BY id",
    );
    const accountsMs = performance.now() - t;

    // A settled table, as a long-running store would have it (no autovacuum mid-measure).
    t = performance.now();
    await db.query("VACUUM ANALYZE");
    const vacuumMs = performance.now() - t;

    return {
      kind,
      app,
      db,
      accountAddr,
      proxyAddr,
      ids,
      seedMs: { accounts: accountsMs, proxies: proxiesMs, vacuum: vacuumMs },
      url,
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
