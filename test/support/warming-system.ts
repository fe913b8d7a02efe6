/**
 * A warming system of real `conveer start` processes for process-level tests: a sandbox, local
 * CONNECT and SOCKS5 proxies, a scenario of PER_TASK actions over two fast days, one store
 * (PGlite in a data dir, a fresh PostgreSQL database, or a given one the caller drops) shared by
 * every process started on it, and the books to check afterwards.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../../src/gen/conveer/v1/proxy_pb.js";
import { VKService } from "../../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../../src/server/clients.ts";
import { createSandbox } from "../../src/sandbox/sandbox.ts";
import type { Db } from "../../src/store/db.ts";
import { killAll, runCli, systemEnv, waitHealthy } from "./cli.ts";
import type { Cli } from "./cli.ts";
import { eventually } from "./grpc.ts";
import { startHttpConnectProxy, startSocks5Proxy } from "./local-proxies.ts";
import type { LocalProxy } from "./local-proxies.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "./store.ts";

/** Two scenario days of three actions each, spread over the whole day. */
const SCENARIO = {
  id: "procs",
  name: "Process test",
  totalDays: 2,
  days: [{ days: "1-2", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2, view_stories: 1 } }],
};
export const PER_TASK = 6;

/** One Conveer system: its env (ports, data dir, store), the processes started on it so far, clients. */
export type Setup = Awaited<ReturnType<typeof setUp>>;

export async function setUp(kind: "pglite" | "postgres" | { databaseUrl: string }, extra: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), "conveer-warm-proc-"));
  await writeFile(join(dir, "procs.json"), JSON.stringify(SCENARIO));
  const sandbox = createSandbox();
  const { url: sandboxUrl } = await sandbox.listen("127.0.0.1:0");
  const proxies: LocalProxy[] = [await startHttpConnectProxy({ username: "w", password: "w" }), await startSocks5Proxy({ username: "w", password: "w" })];
  const dbUrl = typeof kind === "object" ? kind.databaseUrl : kind === "postgres" ? await freshPostgresDatabase() : "";
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];
  const common: Record<string, string> = {
    CONVEER_MASTER_KEY: "33".repeat(32),
    CONVEER_SANDBOX_URL: sandboxUrl,
    CONVEER_SCENARIOS_DIR: dir,
    // A scenario day in 4 real seconds.
    CONVEER_TIME_SCALE: "21600",
    CONVEER_LOG_LEVEL: "warn",
    // Several processes on one PostgreSQL (max_connections 100, shared with the test run's other
    // files): each takes at most 12 pooled connections, plus its LISTEN and health-check ones.
    CONVEER_DB_POOL_SIZE: "12",
    // The proxies are local.
    CONVEER_PROXY_ALLOW_PRIVATE: "true",
    ...(dbUrl ? { DATABASE_URL: dbUrl } : {}),
    ...extra,
  };
  /** Starts one more `conveer start` on this system (its own ports and data dir; the same store); `entry` as runCli's (another checkout's code). */
  async function start(name: string, dataDir = join(dir, name), env: Record<string, string> = {}, entry?: Parameters<typeof runCli>[2]) {
    const sys = await systemEnv(dataDir, { ...common, ...env });
    const cli = runCli(["start"], sys.env, entry);
    children.push(cli);
    await waitHealthy(cli, sys.http);
    const client = <S extends Parameters<typeof remoteClient>[0]>(s: S, service: Parameters<typeof sys.addr>[0]) => remoteClient(s, { addr: sys.addr(service), sessions });
    return {
      cli,
      http: sys.http,
      accounts: client(AccountService, "account"),
      proxies: client(ProxyService, "proxy"),
      warming: client(WarmingService, "warming"),
      vk: client(VKService, "vk"),
      /** This process's worker counters (conveer_warming_worker_actions_total by state) and in_flight. */
      async workerActions(): Promise<Record<string, number>> {
        const text = await (await fetch(`http://127.0.0.1:${sys.http}/metrics`)).text();
        const counts = Object.fromEntries([...text.matchAll(/^conveer_warming_worker_actions_total\{state="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
        return { ...counts, in_flight: Number(/^conveer_warming_worker_in_flight (\d+)/m.exec(text)?.[1] ?? 0) };
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
      // A child's errors (pino level 50+) are what explains a failed assertion here: show them.
      for (const c of children) for (const l of c.logs()) if (Number(l.level) >= 50) console.log(`# ${JSON.stringify(l).slice(0, 2000)}`);
      for (const s of sessions) s.abort();
      await killAll(children);
      await sandbox.close();
      for (const p of proxies) await p.close();
      if (kind === "postgres") await dropPostgresDatabase(dbUrl);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts a task per account, spread over the given processes, eight calls in flight at a time:
 * set-up, not load (sixty at once on a loaded host took one StartWarming past the 2 s query
 * timeout that test/store-outage.test.ts gives its processes).
 */
export async function startAll(via: { warming: Awaited<ReturnType<Setup["start"]>>["warming"] }[], accountIds: string[]): Promise<string[]> {
  const tasks: WarmingTask[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < accountIds.length; i = next++) tasks[i] = await via[i % via.length].warming.startWarming({ accountId: accountIds[i], scenarioId: "procs" });
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  for (const t of tasks) assert.equal(t.status, WarmingStatus.RUNNING);
  return tasks.map((t) => t.id);
}

/** Waits until every task has ended; answers them. */
export async function waitEnded(warming: Awaited<ReturnType<Setup["start"]>>["warming"], ids: string[], ms: number): Promise<WarmingTask[]> {
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
export async function checkBooks(db: Db, s: Setup, tasks: WarmingTask[]): Promise<{ replays: number; reclaimed: number }> {
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
