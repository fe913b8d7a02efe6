/**
 * A Conveer cluster for fault tests: three `conveer start` hosts, each in its own network
 * namespace with its own address, on one PostgreSQL cluster of the test's own listening on the
 * bridge (TLS only, `sslmode=verify-full`), with tokens on (`CONVEER_AUTH=tokens`) and TLS on every
 * host's ports, all certificates signed by one test CA (certs.ts). The test's side of
 * the bridge also holds the shared sandbox (admin token required) and two proxies. The test
 * talks to the hosts over TLS with a token, like a client on another machine would.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../../src/gen/conveer/v1/proxy_pb.js";
import { VKService } from "../../src/gen/conveer/v1/vk_pb.js";
import { WarmingService } from "../../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../../src/server/clients.ts";
import { createSandbox } from "../../src/sandbox/sandbox.ts";
import type { Sandbox } from "../../src/sandbox/sandbox.ts";
import { openPostgres } from "../../src/store/postgres.ts";
import type { Db } from "../../src/store/db.ts";
import { MAIN, killAll, runCli } from "../support/cli.ts";
import type { Cli } from "../support/cli.ts";
import { eventually, freePort } from "../support/grpc.ts";
import { startHttpConnectProxy, startSocks5Proxy } from "../support/local-proxies.ts";
import type { LocalProxy } from "../support/local-proxies.ts";
import { issueCert, makeCa } from "./certs.ts";
import { createNet } from "./netns.ts";
import type { Net } from "./netns.ts";
import { createPgCluster } from "./pg-cluster.ts";
import type { PgCluster } from "./pg-cluster.ts";

/** Days × actions per day of the cluster's scenario; a scenario day lasts DAY_MS real ms. */
export const SCENARIO = { id: "cluster", name: "Cluster test", totalDays: 4, days: [{ days: "1-4", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2, view_stories: 1 } }] };
export const PER_TASK = 12;
const TIME_SCALE = 10_800; // a scenario day in 8 real seconds: a task runs ~32 s
export const LEASE_MS = 3000;

const SERVICES = ["account", "proxy", "warming", "sms", "vk", "telegram", "mail", "max"] as const;

/** One Conveer host: its process (started, killed, started again) and TLS+token clients. */
export type Host = ReturnType<typeof hostOf>;
export type Cluster = Awaited<ReturnType<typeof createCluster>>;

function hostOf(c: { net: Net; dir: string; env: Record<string, string>; ca: string; token: string; sessions: Http2SessionManager[]; children: Cli[] }, i: number) {
  const { ns, addr } = c.net.hosts[i];
  const env: Record<string, string> = { ...c.env, CONVEER_DATA_DIR: join(c.dir, `host${i + 1}`), CONVEER_HTTP_ADDR: `${addr}:8080` };
  SERVICES.forEach((s, k) => (env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = `${addr}:${50051 + k}`));
  const client = <S extends Parameters<typeof remoteClient>[0]>(s: S, port: number) => remoteClient(s, { addr: `${addr}:${port}`, tls: true, caFile: c.ca, token: c.token, sessions: c.sessions });
  let cli: Cli | undefined;
  const host = {
    name: `host${i + 1}`,
    addr,
    get cli(): Cli {
      return cli!;
    },
    accounts: client(AccountService, 50051),
    proxies: client(ProxyService, 50052),
    warming: client(WarmingService, 50053),
    vk: client(VKService, 50055),
    /** Starts `conveer start` in the host's namespace (with `extra` env) and waits until /healthz answers 200 over TLS. */
    async start(extra: Record<string, string> = {}): Promise<void> {
      cli = runCli(["start"], { ...env, ...extra }, { argv: ["ip", "netns", "exec", ns, process.execPath, MAIN], cwd: c.dir });
      c.children.push(cli);
      const started = cli;
      await eventually(async () => !started.running() || (await get(`https://${addr}:8080/healthz`, c.ca)).status === 200, 60_000, `${host.name} /healthz`).catch((err: Error) => {
        throw new Error(`${err.message}\n${started.stderr()}\n${started.stdout().slice(-3000)}`);
      });
      assert.ok(started.running(), `${host.name} exited: ${started.stderr()}\n${started.stdout().slice(-3000)}`);
    },
    /** This host's worker counters (conveer_warming_worker_actions_total by state) and in_flight. */
    async workerActions(): Promise<Record<string, number>> {
      const { body } = await get(`https://${addr}:8080/metrics`, c.ca, c.token);
      const counts = Object.fromEntries([...body.matchAll(/^conveer_warming_worker_actions_total\{state="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
      return { ...counts, in_flight: Number(/^conveer_warming_worker_in_flight (\d+)/m.exec(body)?.[1] ?? 0) };
    },
  };
  return host;
}

/** GET over TLS trusting `caFile`, with an optional bearer token; never rejects on a refused or cut connection (status 0). */
export function get(url: string, caFile: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca: readFileSync(caFile), timeout: 2000, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = "";
      res.on("data", (b: Buffer) => (body += b.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", () => resolve({ status: 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve({ status: 0, body: "" }));
  });
}

/** Builds the network, the database, the sandbox, the proxies, a token and three hosts (not yet started). */
export async function createCluster(extraEnv: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "conveer-cluster-"));
  const net = createNet(3);
  let pg: PgCluster | undefined;
  let sandbox: Sandbox | undefined;
  const proxies: LocalProxy[] = [];
  const children: Cli[] = [];
  const sessions: Http2SessionManager[] = [];
  const cleanup = async () => {
    for (const s of sessions) s.abort();
    await killAll(children);
    await sandbox?.close();
    for (const p of proxies) await p.close();
    pg?.destroy();
    net.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // One test CA signs the hosts' certificate and the database's: hosts and the test trust it.
    const ca = makeCa(dir);
    pg = createPgCluster(net.gateway, await freePort(), `${net.gateway}/24`, ca);
    const sandboxToken = "sandbox-token-" + "5".repeat(24);
    sandbox = createSandbox({ access: { token: sandboxToken } });
    const { url: sandboxUrl } = await sandbox.listen(`${net.gateway}:0`);
    proxies.push(await startHttpConnectProxy({ username: "c", password: "c", host: net.gateway }), await startSocks5Proxy({ username: "c", password: "c", host: net.gateway }));
    writeFileSync(join(dir, "cluster.json"), JSON.stringify(SCENARIO));
    const { cert, key } = issueCert(ca, dir, "hosts", net.hosts.map((h) => h.addr));
    const env: Record<string, string> = {
      DATABASE_URL: pg.url,
      CONVEER_AUTH: "tokens",
      CONVEER_TLS_CERT: cert,
      CONVEER_TLS_KEY: key,
      CONVEER_MASTER_KEY: "44".repeat(32),
      CONVEER_SANDBOX_URL: sandboxUrl,
      CONVEER_SANDBOX_TOKEN: sandboxToken,
      CONVEER_SCENARIOS_DIR: dir,
      CONVEER_TIME_SCALE: String(TIME_SCALE),
      CONVEER_WARMING_LEASE_MS: String(LEASE_MS),
      CONVEER_REGISTRATION_LEASE_MS: String(LEASE_MS),
      CONVEER_DB_POOL_SIZE: "12",
      CONVEER_PROXY_ALLOW_PRIVATE: "true",
      CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000",
      CONVEER_LOG_LEVEL: "info",
      ...extraEnv,
    };
    // The first token, made on the shared store before any host runs (as an operator would).
    const made = runCli(["token", "create", "--name", "admin", "--scopes", "*"], { DATABASE_URL: pg.url, CONVEER_MASTER_KEY: env.CONVEER_MASTER_KEY, CONVEER_DATA_DIR: join(dir, "cli") });
    children.push(made);
    assert.equal(await made.exited, 0, made.stderr());
    const token = made.stdout().trim();
    const ctx = { net, dir, env, ca: ca.cert, token, sessions, children };
    const hosts = [0, 1, 2].map((i) => hostOf(ctx, i));
    const db: Db = openPostgres({ url: pg.url, max: 2 });
    return { net, pg, ca, sandbox, proxies, hosts, token, db, dir, close: async () => (await db.close(), await cleanup()) };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
