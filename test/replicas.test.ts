/**
 * Two real `conveer start` processes on one PostgreSQL database: migrations when both start at
 * once on an empty database, and proxy capacity under concurrent allocation across replicas.
 * Runs only when CONVEER_TEST_DATABASE_URL is set.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { loadMigrations } from "../src/store/migrate.ts";
import { dropPostgresDatabase } from "./support/store.ts";

const BASE_URL = process.env.CONVEER_TEST_DATABASE_URL;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NODE = join(ROOT, "node_modules/.bin/node");
const MASTER_KEY = randomBytes(32).toString("hex");

/** A free loopback port (the OS picks it; released before the server binds it). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** An empty (un-migrated) database made with plain CREATE DATABASE; returns its URL. */
async function emptyDatabase(base: string): Promise<string> {
  const name = `conveer_r_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

type Replica = {
  name: string;
  child: ChildProcess;
  accountAddr: string;
  proxyAddr: string;
  httpPort: number;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  accounts: Client<typeof AccountService>;
  proxies: Client<typeof ProxyService>;
};

const sessions: Http2SessionManager[] = [];

async function spawnReplica(name: string, databaseUrl: string, dataDir: string): Promise<Replica> {
  const [accountPort, proxyPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const accountAddr = `127.0.0.1:${accountPort}`;
  const proxyAddr = `127.0.0.1:${proxyPort}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    CONVEER_MASTER_KEY: MASTER_KEY,
    CONVEER_LOG_LEVEL: "warn",
    CONVEER_DATA_DIR: dataDir,
    CONVEER_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    ACCOUNT_SERVICE_GRPC_ADDR: accountAddr,
    PROXY_SERVICE_GRPC_ADDR: proxyAddr,
    // The pool's proxies are made-up addresses: keep the background checker from taking them out of rotation.
    CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000",
    CONVEER_PROXY_FAILURE_THRESHOLD: "100",
  };
  const child = spawn(NODE, ["src/cli/main.ts", "start", "--services", "account,proxy"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return {
    name,
    child,
    accountAddr,
    proxyAddr,
    httpPort,
    output: () => out,
    exited,
    accounts: remoteClient(AccountService, { addr: accountAddr, sessions }),
    proxies: remoteClient(ProxyService, { addr: proxyAddr, sessions }),
  };
}

/** Polls /healthz until it answers 200; fails early with the output when the process exits. */
async function waitHealthy(r: Replica, ms = 30_000): Promise<void> {
  let exit: { code: number | null } | undefined;
  void r.exited.then((e) => (exit = e));
  const end = Date.now() + ms;
  for (;;) {
    if (exit) assert.fail(`${r.name} exited (code ${exit.code}) before it was healthy:\n${r.output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${r.httpPort}/healthz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > end) assert.fail(`${r.name} not healthy after ${ms} ms:\n${r.output()}`);
    await sleep(100);
  }
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
    url = await emptyDatabase(BASE_URL!);
    dataDir = await mkdtemp(join(tmpdir(), "conveer-replicas-"));
    sql = new pg.Client({ connectionString: url });
    await sql.connect();
  });

  after(async () => {
    for (const s of sessions) s.abort();
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
    await sql?.end().catch(() => {});
    if (url) await dropPostgresDatabase(url);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test("both start at once on an empty database; migrations and the first data key happen exactly once", async () => {
    const empty = await sql.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    assert.equal(empty.rows[0].n, 0, "the database should start empty");
    replicas = await Promise.all([spawnReplica("replica A", url, join(dataDir, "a")), spawnReplica("replica B", url, join(dataDir, "b"))]);
    await Promise.all(replicas.map((r) => waitHealthy(r)));

    const migrations = await loadMigrations();
    const applied = await sql.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
    assert.deepEqual(
      applied.rows.map((r) => r.version),
      migrations.map((m) => m.version),
    );
    const keys = await sql.query<{ id: string; active: boolean }>("SELECT id, active FROM data_keys");
    assert.equal(keys.rowCount, 1, `two replicas starting at once should share one data key, found ${JSON.stringify(keys.rows)}`);
    for (const r of replicas) assert.equal(r.child.exitCode, null, `${r.name} exited:\n${r.output()}`);
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

  test("SIGTERM stops both replicas with exit code 0", async () => {
    assert.equal(replicas.length, 2, "the replicas did not start");
    // The clients stay connected: the replicas must drain them (GOAWAY), not wait for them to leave.
    for (const r of replicas) r.child.kill("SIGTERM");
    const exits = await Promise.all(
      replicas.map((r) => Promise.race([r.exited, sleep(20_000).then(() => ({ code: -1, signal: "timeout" }))])),
    );
    for (const s of sessions) s.abort();
    for (const [i, e] of exits.entries()) assert.deepEqual(e, { code: 0, signal: null }, `${replicas[i].name} output:\n${replicas[i].output()}`);
  });
});
