/**
 * Two real `conveer start` processes on one PostgreSQL database: migrations when both start at
 * once on an empty database, proxy capacity under concurrent allocation across replicas, and
 * /metrics: store gauges read the same on both (max across replicas), counters add up (sum).
 * Runs only when CONVEER_TEST_DATABASE_URL is set.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { loadMigrations } from "../src/store/migrate.ts";
import { dropPostgresDatabase, emptyPostgresDatabase } from "./support/store.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import { scrape } from "./support/metrics.ts";
import type { MetricSample } from "./support/metrics.ts";
import type { Cli } from "./support/cli.ts";

const BASE_URL = process.env.CONVEER_TEST_DATABASE_URL;
const MASTER_KEY = randomBytes(32).toString("hex");

/** A `conveer start --services account,proxy` process with clients for its two services. */
type Replica = {
  name: string;
  cli: Cli;
  http: number;
  /** Everything the process printed (stderr, then stdout). */
  output: () => string;
  accounts: Client<typeof AccountService>;
  proxies: Client<typeof ProxyService>;
};

const sessions: Http2SessionManager[] = [];

async function spawnReplica(name: string, databaseUrl: string, dataDir: string): Promise<Replica> {
  const { env, http, addr } = await systemEnv(dataDir, {
    DATABASE_URL: databaseUrl,
    CONVEER_MASTER_KEY: MASTER_KEY,
    CONVEER_LOG_LEVEL: "warn",
    // The pool's proxies are made-up addresses: keep the background checker from taking them out of rotation.
    CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000",
    CONVEER_PROXY_FAILURE_THRESHOLD: "100",
    // ... on loopback ports, which the proxy address policy allows only when told to.
    CONVEER_PROXY_ALLOW_PRIVATE: "true",
  });
  const cli = runCli(["start", "--services", "account,proxy"], env);
  return {
    name,
    cli,
    http,
    output: () => `${cli.stderr()}\n${cli.stdout()}`,
    accounts: remoteClient(AccountService, { addr: addr("account"), sessions }),
    proxies: remoteClient(ProxyService, { addr: addr("proxy"), sessions }),
  };
}

function codeOf(err: unknown): string {
  return err instanceof ConnectError ? Code[err.code] : `non-gRPC error ${String(err)}`;
}

describe("two replicas on one PostgreSQL database", { skip: BASE_URL ? false : "CONVEER_TEST_DATABASE_URL is not set: this test needs a PostgreSQL server shared by two processes" }, () => {
  let url: string;
  let sql: pg.Client;
  let dataDir: string;
  let replicas: Replica[] = [];

  before(async () => {
    url = await emptyPostgresDatabase("conveer_r_");
    dataDir = await mkdtemp(join(tmpdir(), "conveer-replicas-"));
    sql = new pg.Client({ connectionString: url });
    await sql.connect();
  });

  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(replicas.map((r) => r.cli));
    await sql?.end().catch(() => {});
    if (url) await dropPostgresDatabase(url);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test("both start at once on an empty database; migrations and the first data key happen exactly once", async () => {
    const empty = await sql.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    assert.equal(empty.rows[0].n, 0, "the database should start empty");
    replicas = await Promise.all([spawnReplica("replica A", url, join(dataDir, "a")), spawnReplica("replica B", url, join(dataDir, "b"))]);
    await Promise.all(replicas.map((r) => waitHealthy(r.cli, r.http, 30_000)));

    const migrations = await loadMigrations();
    const applied = await sql.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
    assert.deepEqual(
      applied.rows.map((r) => r.version),
      migrations.map((m) => m.version),
    );
    const keys = await sql.query<{ id: string; active: boolean }>("SELECT id, active FROM data_keys");
    assert.equal(keys.rowCount, 1, `two replicas starting at once should share one data key, found ${JSON.stringify(keys.rows)}`);
    for (const r of replicas) assert.equal(r.cli.proc.exitCode, null, `${r.name} exited:\n${r.output()}`);
  });

  test("300 concurrent allocations over 100 single-slot proxies, split across replicas: exactly 100 win", async () => {
    assert.equal(replicas.length, 2, "the replicas did not start");
    const [a] = replicas;
    const accountIds: string[] = [];
    for (let i = 0; i < 300; i += 50) {
      const made = await Promise.all(
        Array.from({ length: 50 }, (_, j) => replicas[(i + j) % 2].accounts.createAccount({ platform: "vk", login: `user-${i + j}`, password: `pw-${i + j}` })),
      );
      accountIds.push(...made.map((m) => m.id));
    }
    assert.equal(new Set(accountIds).size, 300);

    const add = await a.proxies.addProxies({ proxies: Array.from({ length: 100 }, (_, i) => ({ url: `http://127.0.0.1:${20_000 + i}`, capacity: 1 })) });
    assert.equal(add.added, 100, JSON.stringify(add.results.filter((r) => r.error)));
    // No background health check may hold a proxy row while the allocations race.
    await sql.query("UPDATE proxies SET next_check_at = now() + interval '1 day'");
    await sleep(200);

    const outcomes = await Promise.all(
      accountIds.map((id, i) =>
        replicas[i % 2].proxies.allocateProxy({ accountId: id, platform: "vk" }).then(
          (p) => ({ ok: true as const, proxyId: p.id, accountId: id }),
          (err: unknown) => ({ ok: false as const, code: codeOf(err), message: (err as Error).message }),
        ),
      ),
    );
    const wins = outcomes.filter((o) => o.ok);
    const losses = outcomes.filter((o) => !o.ok);
    const lossCodes = [...new Set(losses.map((l) => l.code))];
    assert.deepEqual(lossCodes, ["ResourceExhausted"], `unexpected failures: ${JSON.stringify(losses.filter((l) => l.code !== "ResourceExhausted").slice(0, 3))}`);
    assert.equal(wins.length, 100);
    assert.equal(losses.length, 200);
    // Both replicas handed out proxies.
    const winsPerReplica = [0, 1].map((k) => outcomes.filter((o, i) => o.ok && i % 2 === k).length);
    assert.ok(winsPerReplica.every((n) => n > 0), `wins per replica: ${winsPerReplica}`);
    assert.equal(new Set(wins.map((w) => w.proxyId)).size, 100, "a proxy of capacity 1 was answered to two accounts");

    const load = await sql.query<{ max: number; sum: number }>("SELECT max(allocated)::int AS max, sum(allocated)::int AS sum FROM proxies");
    assert.deepEqual(load.rows[0], { max: 1, sum: 100 });
    const allocs = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM proxy_allocations");
    assert.equal(allocs.rows[0].n, 100);
    const twice = await sql.query("SELECT proxy_id FROM proxy_allocations a JOIN proxies p ON p.id = a.proxy_id GROUP BY proxy_id, p.capacity HAVING count(*) > p.capacity");
    assert.equal(twice.rowCount, 0, `proxies over capacity: ${JSON.stringify(twice.rows)}`);
    const perAccount = await sql.query("SELECT account_id FROM proxy_allocations GROUP BY account_id HAVING count(*) > 1");
    assert.equal(perAccount.rowCount, 0);
    // The database agrees with the answers.
    const held = await sql.query<{ account_id: string; proxy_id: string }>("SELECT account_id, proxy_id FROM proxy_allocations");
    assert.deepEqual(
      new Map(held.rows.map((r) => [r.account_id, r.proxy_id])),
      new Map(wins.map((w) => [w.accountId, w.proxyId])),
    );
  });

  test("one account allocated 10 times at once from both replicas gets one proxy, and no slot leaks", async () => {
    assert.equal(replicas.length, 2, "the replicas did not start");
    // Only one free slot left: the racing calls for the same account must not take slots among themselves.
    const add = await replicas[1].proxies.addProxies({ proxies: [{ url: "http://127.0.0.1:21000", capacity: 1 }] });
    assert.equal(add.added, 1);
    await sql.query("UPDATE proxies SET next_check_at = now() + interval '1 day'");
    const acc = await replicas[0].accounts.createAccount({ platform: "telegram", login: "sticky", password: "pw" });
    const calls = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        replicas[i % 2].proxies.allocateProxy({ accountId: acc.id, platform: "telegram" }).then(
          (p) => p.id,
          (err: unknown) => `failed: ${codeOf(err)}: ${(err as Error).message}`,
        ),
      ),
    );
    const outcomes = [...new Set(calls)];
    assert.equal(outcomes.length, 1, `answers differ: ${JSON.stringify(outcomes)}`);
    assert.match(outcomes[0], /^[0-9a-f]{24}$/);
    const held = await sql.query<{ proxy_id: string }>("SELECT proxy_id FROM proxy_allocations WHERE account_id = $1", [acc.id]);
    assert.deepEqual(held.rows, [{ proxy_id: outcomes[0] }]);
    const load = await sql.query<{ sum: number; n: number }>("SELECT (SELECT sum(allocated)::int FROM proxies) AS sum, (SELECT count(*)::int FROM proxy_allocations) AS n");
    assert.deepEqual(load.rows[0], { sum: 101, n: 101 }, "allocated counters disagree with the allocations (a losing call leaked its slot)");
  });

  test("/metrics: the store gauges read the same on both replicas and match the database; the call counters add up to the calls made", async () => {
    assert.equal(replicas.length, 2, "the replicas did not start");
    const STORE_GAUGES = ["conveer_accounts", "conveer_proxies", "conveer_proxy_slots"];
    const gauges = (samples: MetricSample[]) =>
      samples
        .filter((x) => STORE_GAUGES.includes(x.name))
        .map((x) => `${x.name}${JSON.stringify(x.labels)} ${x.value}`)
        .sort();
    const [a, b] = await Promise.all(replicas.map((r) => scrape(r.http)));
    assert.ok(gauges(a.samples).length >= 6, gauges(a.samples).join("\n"));
    assert.deepEqual(gauges(b.samples), gauges(a.samples), "a store gauge differs between the replicas");
    const sum = (samples: MetricSample[], name: string, labels: Record<string, string>) =>
      samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((n, x) => n + x.value, 0);
    const db = await sql.query<{ accounts: number; proxies: number; used: number; free: number }>(
      "SELECT (SELECT count(*)::int FROM accounts) AS accounts, (SELECT count(*)::int FROM proxies) AS proxies, (SELECT sum(allocated)::int FROM proxies WHERE healthy) AS used, (SELECT sum(capacity - allocated)::int FROM proxies WHERE healthy) AS free",
    );
    assert.deepEqual(
      { accounts: sum(a.samples, "conveer_accounts", {}), proxies: sum(a.samples, "conveer_proxies", {}), used: sum(a.samples, "conveer_proxy_slots", { state: "used" }), free: sum(a.samples, "conveer_proxy_slots", { state: "free" }) },
      db.rows[0],
      "max across replicas (any one of them) is the store's figure",
    );
    // Counters count what each process did: CreateAccount calls went to both, 301 in all.
    const created = [a, b].map((m) => sum(m.samples, "conveer_grpc_calls_total", { method: "CreateAccount", code: "OK" }));
    assert.ok(created.every((n) => n > 0), `CreateAccount per replica: ${created}`);
    assert.equal(created[0] + created[1], 301, "sum across replicas is every call made");
  });

  test("SIGTERM stops both replicas with exit code 0", async () => {
    assert.equal(replicas.length, 2, "the replicas did not start");
    // The clients stay connected: the replicas must drain them (GOAWAY), not wait for them to leave.
    const exits = await Promise.all(replicas.map((r) => terminate(r.cli, 20_000)));
    for (const s of sessions) s.abort();
    for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `${replicas[i].name} output:\n${replicas[i].output()}`);
  });
});
