/**
 * The real CLI as a child process (`node src/cli/main.ts ...`): start-up on chosen ports, graceful
 * SIGTERM with a call in flight, `conveer token create` on a stopped data directory, and a
 * PostgreSQL store that goes away and comes back (through a TCP forwarder the test controls).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "./support/store.ts";
import { startHangingProxy } from "./support/local-proxies.ts";
import { eventually, healthCheck, healthClient, rejectsWith } from "./support/grpc.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

describe("conveer start (child process, embedded store)", () => {
  let dataDir: string;
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "conveer-proc-"));
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(children);
    await rm(dataDir, { recursive: true, force: true });
  });

  test("comes up on the configured ports; SIGTERM drains an in-flight call, then exits 0 within 5 s, logging \"stopped\"", async () => {
    // The hanging proxy is local, and the slow call names a local check target.
    const { env, ports, http } = await systemEnv(dataDir, { CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_TARGETS: "127.0.0.1:9" });
    const cli = runCli(["start"], env);
    children.push(cli);
    await waitHealthy(cli, http);
    const accounts = remoteClient(AccountService, { addr: `127.0.0.1:${ports.account}`, sessions });
    const proxies = remoteClient(ProxyService, { addr: `127.0.0.1:${ports.proxy}`, sessions });
    const acc = await accounts.createAccount({ platform: "vk", login: "proc", password: "pw" });
    assert.equal((await accounts.getAccount({ accountId: acc.id })).login, "proc");
    const h = healthClient(`127.0.0.1:${ports.warming}`);
    try {
      assert.equal(await healthCheck(h, "conveer.WarmingService"), "SERVING");
    } finally {
      h.close();
    }

    // A slow call: a health check through a proxy that accepts and never answers (times out after 2.5 s).
    const hanging = await startHangingProxy({ scheme: "socks5" });
    try {
      const added = await proxies.addProxies({ proxies: [{ url: hanging.url }] });
      const proxyId = added.results[0].proxyId;
      assert.ok(proxyId, added.results[0].error);
      const slow = proxies.checkHealth({ proxyId, target: "127.0.0.1:9" }, { timeoutMs: 20_000 });
      await eventually(() => hanging.connections > 0, 5000, "the slow call to reach the proxy");
      const stopping = terminate(cli);
      const res = await slow;
      assert.equal(res.healthy, false, "the in-flight call finished with its real answer");
      const { code, ms } = await stopping;
      assert.equal(code, 0, `exit code; stderr: ${cli.stderr()}`);
      assert.ok(ms < 5000, `exited ${Math.round(ms)} ms after SIGTERM`);
      const msgs = cli.logs().map((l) => l.msg);
      assert.ok(msgs.includes("stopping: draining in-flight calls"), msgs.join(" | "));
      assert.equal(msgs.at(-1), "stopped");
    } finally {
      await hanging.close();
    }
  });

  test("SIGTERM while it starts up (the store is open, the ports are not yet): it finishes starting, then stops cleanly and exits 0", async () => {
    const dir = await mkdtemp(join(tmpdir(), "conveer-proc-early-"));
    try {
      const { env } = await systemEnv(dir, {});
      const cli = runCli(["start"], env);
      children.push(cli);
      // "migrations applied" comes from the store's opening, before any service is mounted.
      await eventually(() => cli.logs().some((l) => l.msg === "migrations applied"), 45_000, "the store to open");
      const { code } = await terminate(cli);
      assert.equal(code, 0, `exit code; stderr: ${cli.stderr()}`);
      const msgs = cli.logs().map((l) => l.msg);
      assert.ok(msgs.includes("stopping: draining in-flight calls"), msgs.join(" | "));
      assert.equal(msgs.at(-1), "stopped");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("`conveer token create` on the stopped data directory prints a token; a server started afterwards requires it", async () => {
    const { env, ports, http } = await systemEnv(dataDir);
    const create = runCli(["token", "create", "--name", "x", "--scopes", "*"], env);
    assert.equal(await create.exited, 0, create.stderr());
    const token = create.stdout().trim();
    assert.match(token, /^cv_[A-Za-z0-9_-]{20,}$/);
    assert.match(create.stderr(), /token "x" created/);

    const cli = runCli(["start"], env);
    children.push(cli);
    await waitHealthy(cli, http);
    try {
      const addr = `127.0.0.1:${ports.account}`;
      await rejectsWith(remoteClient(AccountService, { addr, sessions }).listAccounts({}), Code.Unauthenticated, /conveer token create/);
      const authed = remoteClient(AccountService, { addr, token, sessions });
      assert.equal((await authed.listAccounts({})).accounts[0].login, "proc", "the data of the first run is still there");
      // While the server holds the data directory, admin commands go through its HTTP port (AdminService), with a token.
      const anon = runCli(["token", "create", "--name", "y", "--scopes", "*"], env);
      assert.equal(await anon.exited, 1);
      assert.match(anon.stderr(), /conveer: the server at http:\/\/127\.0\.0\.1:\d+ needs a token: set CONVEER_TOKEN .*stop the server and run this again/);
      const made = runCli(["token", "create", "--name", "y", "--scopes", "*"], { ...env, CONVEER_TOKEN: token });
      assert.equal(await made.exited, 0, made.stderr());
      assert.match(made.stdout(), /^cv_/);
    } finally {
      const { code } = await terminate(cli);
      assert.equal(code, 0, cli.stderr());
    }
  });
});

/** A TCP forwarder to PostgreSQL that the test can stop (closing every connection) and start again on the same port. */
function forwarder(target: { host: string; port: number }) {
  let server: net.Server | undefined;
  const sockets = new Set<net.Socket>();
  let port = 0;
  return {
    get port() {
      return port;
    },
    async start(): Promise<void> {
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on("close", () => sockets.delete(sock));
          sock.on("error", () => {
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(port, "127.0.0.1", () => resolve());
      });
      port = (s.address() as net.AddressInfo).port;
      server = s;
    },
    async stop(): Promise<void> {
      const s = server;
      server = undefined;
      for (const sock of sockets) sock.destroy();
      if (s) await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

describe("PostgreSQL that goes away and comes back", { skip: !process.env.CONVEER_TEST_DATABASE_URL && "CONVEER_TEST_DATABASE_URL is not set" }, () => {
  let url: string;
  let dataDir: string;
  let f: ReturnType<typeof forwarder>;
  const sessions: Http2SessionManager[] = [];
  let cli: Cli | undefined;
  before(async () => {
    url = await freshPostgresDatabase();
    const real = new URL(url);
    f = forwarder({ host: real.hostname, port: Number(real.port || 5432) });
    dataDir = await mkdtemp(join(tmpdir(), "conveer-pg-"));
  });
  after(async () => {
    for (const s of sessions) s.abort();
    if (cli) await killAll([cli]);
    await f.stop();
    await dropPostgresDatabase(url);
    await rm(dataDir, { recursive: true, force: true });
  });

  test("calls answer UNAVAILABLE (not INTERNAL, no hang) while the store is down, and succeed again when it is back, without a restart", async () => {
    await f.start();
    const viaForwarder = new URL(url);
    viaForwarder.host = `127.0.0.1:${f.port}`;
    const { env, ports, http } = await systemEnv(dataDir, { DATABASE_URL: viaForwarder.toString(), CONVEER_MASTER_KEY: "33".repeat(32) });
    cli = runCli(["start"], env);
    await waitHealthy(cli, http);
    const accounts = remoteClient(AccountService, { addr: `127.0.0.1:${ports.account}`, sessions });
    const acc = await accounts.createAccount({ platform: "telegram", login: "pg-outage", password: "pw" });
    const h = healthClient(`127.0.0.1:${ports.account}`);
    try {
      await f.stop(); // the database "goes away": no new connections, every open one cut
      for (let i = 0; i < 4; i++) {
        await rejectsWith(accounts.getAccount({ accountId: acc.id }, { timeoutMs: 10_000 }), Code.Unavailable, /store is unreachable/);
      }
      await rejectsWith(accounts.createAccount({ platform: "vk", login: "during-outage", password: "pw" }, { timeoutMs: 10_000 }), Code.Unavailable);
      await rejectsWith(accounts.getCredentials({ accountId: acc.id }, { timeoutMs: 10_000 }), Code.Unavailable);
      const down = await fetch(`http://127.0.0.1:${http}/healthz`);
      assert.equal(down.status, 503);
      assert.equal(((await down.json()) as { status: string }).status, "NOT_SERVING");
      await eventually(async () => (await healthCheck(h, "")) === "NOT_SERVING", 8000, "health to report NOT_SERVING");

      await f.start(); // back on the same port
      await eventually(async () => (await accounts.getAccount({ accountId: acc.id }, { timeoutMs: 5000 })).login === "pg-outage", 15_000, "calls to succeed again");
      assert.equal((await accounts.getCredentials({ accountId: acc.id })).password, "pw");
      assert.ok((await accounts.createAccount({ platform: "vk", login: "after-outage", password: "pw" })).id);
      assert.equal((await fetch(`http://127.0.0.1:${http}/healthz`)).status, 200);
      await eventually(async () => (await healthCheck(h, "")) === "SERVING", 8000, "health to report SERVING again");
      assert.equal(cli.proc.exitCode, null, "the process never died");
      const internal = cli.logs().filter((l) => l.code === "INTERNAL");
      assert.deepEqual(internal, [], "no call failed as INTERNAL");
    } finally {
      h.close();
      const { code } = await terminate(cli);
      assert.equal(code, 0, cli.stderr());
    }
  });
});
