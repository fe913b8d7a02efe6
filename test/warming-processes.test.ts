/**
 * Warming across real `conveer start` processes, through the real platform service, the sandbox
 * and local proxies:
 * - two replicas on one PostgreSQL share 500 tasks (started through them and a third, API-only
 *   replica): every planned action reaches the platform exactly once (the sandbox counts repeats
 *   of each action's idempotency key) and is recorded exactly once;
 * - a process SIGKILLed mid-run, then started again: every task completes, nothing lost, nothing
 *   counted twice (PGlite and PostgreSQL).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { WarmingService, WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { createSandbox } from "../src/sandbox/sandbox.ts";
import { openPglite } from "../src/store/pglite.ts";
import { openPostgres } from "../src/store/postgres.ts";
import type { Db } from "../src/store/db.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";
import { startHttpConnectProxy, startSocks5Proxy } from "./support/local-proxies.ts";
import type { LocalProxy } from "./support/local-proxies.ts";
import { STORE_KINDS, dropPostgresDatabase, freshPostgresDatabase } from "./support/store.ts";

/** Two scenario days of three actions each, spread over the whole day. */
const SCENARIO = {
  id: "procs",
  name: "Process test",
  totalDays: 2,
  days: [{ days: "1-2", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2, view_stories: 1 } }],
};
const PER_TASK = 6;

/** One Conveer system: its env (ports, data dir, store), the processes started on it so far, clients. */
type Setup = Awaited<ReturnType<typeof setUp>>;

async function setUp(kind: "pglite" | "postgres", extra: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), "conveer-warm-proc-"));
  await writeFile(join(dir, "procs.json"), JSON.stringify(SCENARIO));
  const sandbox = createSandbox();
  const { url: sandboxUrl } = await sandbox.listen("127.0.0.1:0");
  const proxies: LocalProxy[] = [await startHttpConnectProxy({ username: "w", password: "w" }), await startSocks5Proxy({ username: "w", password: "w" })];
  const dbUrl = kind === "postgres" ? await freshPostgresDatabase() : "";
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];
  const common: Record<string, string> = {
    CONVEER_MASTER_KEY: "33".repeat(32),
    CONVEER_SANDBOX_URL: sandboxUrl,
    CONVEER_SCENARIOS_DIR: dir,
    // A scenario day in 4 real seconds.
    CONVEER_TIME_SCALE: "21600",
    CONVEER_LOG_LEVEL: "warn",
    // The proxies are local.
    CONVEER_PROXY_ALLOW_PRIVATE: "true",
    ...(dbUrl ? { DATABASE_URL: dbUrl } : {}),
    ...extra,
  };
  /** Starts one more `conveer start` on this system (its own ports and data dir; the same store). */
  async function start(name: string, dataDir = join(dir, name), env: Record<string, string> = {}) {
    const sys = await systemEnv(dataDir, { ...common, ...env });
    const cli = runCli(["start"], sys.env);
    children.push(cli);
    await waitHealthy(cli, sys.http);
    const client = <S extends Parameters<typeof remoteClient>[0]>(s: S, service: Parameters<typeof sys.addr>[0]) => remoteClient(s, { addr: sys.addr(service), sessions });
    return {
      cli,
      http: sys.http,
      accounts: client(AccountService, "account"),
      proxies: client(ProxyService, "proxy"),
      warming: client(WarmingService, "warming"),
      /** This process's conveer_warming_worker_actions gauge by state. */
      async workerActions(): Promise<Record<string, number>> {
        const text = await (await fetch(`http://127.0.0.1:${sys.http}/metrics`)).text();
        return Object.fromEntries([...text.matchAll(/^conveer_warming_worker_actions\{state="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
      },
    };
  }
  return {
    sandbox,
    dir,
    dbUrl,
    start,
    children,
    proxies,
    /** Sandbox users and their Conveer accounts (ACTIVE, credentials stored), and a proxy pool that fits them. */
    async accounts(via: Awaited<ReturnType<typeof start>>, n: number, prefix: string): Promise<string[]> {
      const items = Array.from({ length: n }, (_, i) => ({ platform: "vk", login: `${prefix}_${i}`, password: `pw-${prefix}-${i}` }));
      for (const a of items) sandbox.addUser("vk", a.login, a.password);
      const r = await via.accounts.importAccounts({ accounts: items });
      assert.equal(r.imported, n, JSON.stringify(r.results.filter((x) => x.error).slice(0, 3)));
      const added = await via.proxies.addProxies({ proxies: proxies.map((p) => ({ url: p.url, capacity: n })) });
      for (const x of added.results) assert.ok(x.proxyId, x.error);
      return r.results.map((x) => x.accountId);
    },
    async close() {
      for (const s of sessions) s.abort();
      await killAll(children);
      await sandbox.close();
      for (const p of proxies) await p.close();
      if (dbUrl) await dropPostgresDatabase(dbUrl);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Starts a task per account, spread over the given processes. */
async function startAll(via: { warming: Awaited<ReturnType<Setup["start"]>>["warming"] }[], accountIds: string[]): Promise<string[]> {
  const tasks = await Promise.all(accountIds.map((accountId, i) => via[i % via.length].warming.startWarming({ accountId, scenarioId: "procs" })));
  for (const t of tasks) assert.equal(t.status, WarmingStatus.RUNNING);
  return tasks.map((t) => t.id);
}

/** Waits until every task has ended; answers them. */
async function waitEnded(warming: Awaited<ReturnType<Setup["start"]>>["warming"], ids: string[], ms: number): Promise<WarmingTask[]> {
  let tasks: WarmingTask[] = [];
  await eventually(
    async () => {
      tasks = await Promise.all(ids.map((taskId) => warming.getWarmingStatus({ taskId })));
      return tasks.every((t) => t.status !== WarmingStatus.RUNNING);
    },
    ms,
    "every task to end",
  ).catch((err: Error) => {
    const open = tasks.filter((t) => t.status === WarmingStatus.RUNNING);
    throw new Error(`${err.message}: ${open.length} still running, e.g. ${JSON.stringify(open.slice(0, 2).map((t) => ({ id: t.id, progress: t.progress, done: t.actionsCompleted, failed: t.actionsFailed })))}`);
  });
  return tasks;
}

/**
 * The books, from the store and the sandbox: every planned action done and recorded once; answers
 * how many times the platform saw a repeat of an action's key.
 */
async function checkBooks(db: Db, s: Setup, tasks: WarmingTask[]): Promise<{ replays: number; reclaimed: number }> {
  for (const t of tasks) {
    assert.equal(WarmingStatus[t.status], "COMPLETED", `task ${t.id}: ${t.error}`);
    assert.deepEqual([t.actionsCompleted, t.actionsFailed, t.progress], [PER_TASK, 0, 100], `task ${t.id}`);
  }
  const ids = tasks.map((t) => t.id);
  const actions = await db.query<{ key: string; status: string; attempts: number }>("SELECT key, status, attempts FROM warming_actions WHERE task_id = ANY($1::text[])", [ids]);
  assert.equal(actions.rows.length, ids.length * PER_TASK);
  assert.deepEqual(
    actions.rows.filter((a) => a.status !== "done"),
    [],
  );
  const completed = await db.query<{ task_id: string; seq: string; n: number }>(
    "SELECT task_id, data->>'seq' AS seq, count(*)::int AS n FROM warming_events WHERE event_type = 'action_completed' AND task_id = ANY($1::text[]) GROUP BY 1, 2",
    [ids],
  );
  assert.equal(completed.rows.length, ids.length * PER_TASK, "an action_completed event per planned action");
  assert.deepEqual(
    completed.rows.filter((r) => r.n !== 1),
    [],
    "no action completed twice",
  );
  // The platform's side: every planned action's key reached it (and acted once: a repeat is answered from its record).
  const seen = s.sandbox.state().platforms.vk.idempotency;
  const missing = actions.rows.filter((a) => !seen[a.key]);
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} planned actions never reached the platform`);
  return { replays: actions.rows.reduce((n, a) => n + seen[a.key].replays, 0), reclaimed: actions.rows.filter((a) => a.attempts > 1).length };
}

describe("two replicas on one PostgreSQL share 500 warming tasks", { skip: process.env.CONVEER_TEST_DATABASE_URL ? false : "needs CONVEER_TEST_DATABASE_URL (two processes share one PostgreSQL)" }, () => {
  let s: Setup;
  let db: Db;
  before(async () => {
    s = await setUp("postgres");
    db = openPostgres({ url: s.dbUrl, max: 2 });
  });
  after(async () => {
    await db?.close();
    await s?.close();
  });

  test("every planned action runs once and is recorded once; both replicas do part of the work; accounts end ACTIVE", { timeout: 240_000 }, async () => {
    // A third replica serves the API only (CONVEER_WARMING_WORKER=0): it starts tasks, runs none.
    const [a, b, api] = [await s.start("a"), await s.start("b"), await s.start("api", undefined, { CONVEER_WARMING_WORKER: "0" })];
    const accountIds = await s.accounts(a, 500, "pair");
    const t0 = performance.now();
    const ids = await startAll([a, b, api], accountIds);
    const tasks = await waitEnded(b.warming, ids, 180_000);
    const secs = (performance.now() - t0) / 1000;
    const { replays } = await checkBooks(db, s, tasks);
    assert.equal(replays, 0, "no planned action reached the platform twice");
    const [wa, wb] = [await a.workerActions(), await b.workerActions()];
    assert.deepEqual(await api.workerActions(), { claimed: 0, recorded: 0, dropped: 0, in_flight: 0 }, "the API-only replica ran no action");
    assert.equal(wa.dropped + wb.dropped, 0, "no claim was taken over");
    assert.ok(wa.recorded >= 300 && wb.recorded >= 300, `both replicas worked: ${JSON.stringify({ a: wa, b: wb })}`);
    assert.ok(wa.recorded + wb.recorded >= 500 * PER_TASK);
    const statuses = await Promise.all(accountIds.map((accountId) => a.accounts.getAccount({ accountId })));
    assert.deepEqual(
      statuses.filter((x) => x.status !== AccountStatus.ACTIVE).map((x) => AccountStatus[x.status]),
      [],
    );
    console.log(`# 500 tasks, ${500 * PER_TASK} actions in ${secs.toFixed(1)} s; replica a recorded ${wa.recorded}, b ${wb.recorded}`);
  });
});

for (const kind of STORE_KINDS) {
  describe(`conveer start SIGKILLed mid-warming, then started again (${kind})`, () => {
    let s: Setup;
    before(async () => {
      // Short leases: the restarted process takes the killed one's actions over after 1.5 s.
      s = await setUp(kind, { CONVEER_WARMING_LEASE_MS: "1500" });
      // Platform calls take 20-60 ms, so actions are always in flight when the kill lands.
      s.sandbox.setFaults({ latency: { minMs: 20, maxMs: 60 } });
    });
    after(async () => {
      await s?.close();
    });

    test("every task completes; nothing is lost or counted twice; the platform acted once per planned action", { timeout: 240_000 }, async () => {
      const dataDir = join(s.dir, "one");
      const first = await s.start("first", dataDir);
      const accountIds = await s.accounts(first, 200, kind);
      const ids = await startAll([first], accountIds);
      // Kill once about a third of the actions are recorded, with several in flight.
      let before: Record<string, number> = {};
      await eventually(
        async () => {
          before = await first.workerActions();
          return before.recorded >= 400 && before.in_flight >= 5;
        },
        60_000,
        "a third of the actions recorded and several in flight",
      );
      first.cli.proc.kill("SIGKILL");
      assert.equal(await first.cli.exited, "SIGKILL");

      const second = await s.start("second", dataDir);
      const tasks = await waitEnded(second.warming, ids, 180_000);
      // PGlite allows one process at a time: stop the server before reading its store.
      assert.equal((await terminate(second.cli)).code, 0);
      const db = kind === "postgres" ? openPostgres({ url: s.dbUrl, max: 2 }) : await openPglite(join(dataDir, "pgdata"));
      let books: { replays: number; reclaimed: number };
      try {
        books = await checkBooks(db, s, tasks);
      } finally {
        await db.close();
      }
      // Actions in flight at the kill were claimed again once their lease lapsed; the platform
      // answered the ones it had already done from their keys instead of acting twice. Only a
      // re-claimed action can reach the platform twice.
      assert.match(second.cli.stdout(), /took over warming actions whose lease lapsed/);
      assert.ok(books.reclaimed > 0 && books.reclaimed <= 256, `re-claimed actions: ${books.reclaimed} (at most the worker's concurrency)`);
      assert.ok(books.replays <= books.reclaimed, `repeats at the platform (${books.replays}) are at most the re-claimed actions (${books.reclaimed})`);
      console.log(
        `# ${kind}: killed with ${before.in_flight} in flight and ${before.recorded} recorded; ${books.reclaimed} actions were claimed again after the restart, ${books.replays} of them had reached the platform and were answered from their keys`,
      );
    });
  });
}
