/**
 * Client certificates (mTLS, CONVEER_TLS_CLIENT_CA): certificates made here with openssl (a CA, the
 * server's, a client's it signed, and a client's from another CA). Without a client certificate,
 * or with one from another CA, calls are refused on a gRPC port, on the HTTP port (Connect) and
 * through the CLI; with a good one they work. /healthz answers without one. Replicas that reach
 * each other over gRPC present CONVEER_CLIENT_CERT (needs PostgreSQL to share a store).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Code, createClient } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { createConnectTransport } from "@connectrpc/connect-node";
import { startApp } from "../src/app.ts";
import { loadConfig } from "../src/config/config.ts";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "./support/store.ts";
import { freePort, rejectsWith } from "./support/grpc.ts";
import { runCli } from "./support/cli.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const NEEDS_PG = process.env.CONVEER_TEST_DATABASE_URL ? false : "CONVEER_TEST_DATABASE_URL is not set: replicas in two processes share a store only through PostgreSQL";

/** Makes ca, server (for 127.0.0.1), client (signed by ca) and stranger (signed by another CA) PEM files in dir. */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  for (const ca of ["ca", "other-ca"]) ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${ca}`, "-keyout", `${ca}.key`, "-out", `${ca}.pem`);
  const leaf = (name: string, ca: string, ext: string) => {
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.csr`);
    execFileSync("sh", ["-c", `printf '%s\\n' '${ext}' > ${name}.ext`], { cwd: dir });
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "2", "-extfile", `${name}.ext`, "-out", `${name}.pem`);
  };
  leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost");
  leaf("client", "ca", "extendedKeyUsage=clientAuth");
  leaf("stranger", "other-ca", "extendedKeyUsage=clientAuth");
}

describe("mTLS: CONVEER_TLS_CLIENT_CA", () => {
  let dir: string;
  let sys: TestSystem;
  const sessions: Http2SessionManager[] = [];
  const f = (name: string) => join(dir, name);
  const serverEnv = () => ({ CONVEER_TLS_CERT: f("server.pem"), CONVEER_TLS_KEY: f("server.key"), CONVEER_TLS_CLIENT_CA: f("ca.pem") });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "conveer-mtls-"));
    makeCertificates(dir);
    sys = await startTestSystem("pglite", { env: serverEnv(), services: ["account", "proxy"] });
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await sys?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const grpcClient = (cert?: string) => remoteClient(AccountService, { addr: sys.addr("account"), tls: true, caFile: f("ca.pem"), certFile: cert && f(`${cert}.pem`), keyFile: cert && f(`${cert}.key`), sessions });
  const connectClient = (cert?: string) =>
    createClient(
      AccountService,
      createConnectTransport({
        baseUrl: `https://127.0.0.1:${sys.app.httpPort}`,
        httpVersion: "1.1",
        nodeOptions: { ca: readFileSync(f("ca.pem")), ...(cert ? { cert: readFileSync(f(`${cert}.pem`)), key: readFileSync(f(`${cert}.key`)) } : {}) },
      }),
    );
  const get = (path: string, cert?: string) =>
    new Promise<number>((resolve, reject) => {
      const opts = { host: "127.0.0.1", port: sys.app.httpPort, path, ca: readFileSync(f("ca.pem")), ...(cert ? { cert: readFileSync(f(`${cert}.pem`)), key: readFileSync(f(`${cert}.key`)) } : {}) };
      const req = httpsRequest(opts, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });

  test("config: a client CA needs the server's TLS; a client cert needs its key", () => {
    assert.throws(() => loadConfig({ CONVEER_TLS_CLIENT_CA: "ca.pem" }), /CONVEER_TLS_CLIENT_CA .*needs TLS: set CONVEER_TLS_CERT and CONVEER_TLS_KEY/);
    assert.throws(() => loadConfig({ CONVEER_CLIENT_CERT: "c.pem" }), /CONVEER_CLIENT_CERT and CONVEER_CLIENT_KEY must be set together/);
  });

  test("a gRPC port: no client certificate or one from another CA is refused; a good one works", async () => {
    await assert.rejects(grpcClient().listAccounts({}));
    await assert.rejects(grpcClient("stranger").listAccounts({}));
    const acc = await grpcClient("client").createAccount({ platform: "vk", login: "mtls-grpc", password: "pw" });
    assert.equal((await grpcClient("client").getAccount({ accountId: acc.id })).login, "mtls-grpc");
  });

  test("the HTTP port (Connect): refused without a good client certificate (401 → UNAUTHENTICATED); /healthz answers without one", async () => {
    await rejectsWith(connectClient().listAccounts({}), Code.Unauthenticated, /client certificate/);
    await rejectsWith(connectClient("stranger").listAccounts({}), Code.Unauthenticated, /client certificate/);
    const acc = await connectClient("client").createAccount({ platform: "vk", login: "mtls-connect", password: "pw" });
    assert.equal((await connectClient("client").getAccount({ accountId: acc.id })).login, "mtls-connect");
    // gRPC to the HTTP port (HTTP/2): the same refusal, as grpc-status UNAUTHENTICATED.
    const grpcOnHttp = (cert?: string) => remoteClient(AccountService, { addr: `127.0.0.1:${sys.app.httpPort}`, tls: true, caFile: f("ca.pem"), certFile: cert && f(`${cert}.pem`), keyFile: cert && f(`${cert}.key`), sessions });
    await rejectsWith(grpcOnHttp().getAccount({ accountId: acc.id }), Code.Unauthenticated, /client certificate/);
    await rejectsWith(grpcOnHttp("stranger").getAccount({ accountId: acc.id }), Code.Unauthenticated, /client certificate/);
    assert.equal((await grpcOnHttp("client").getAccount({ accountId: acc.id })).login, "mtls-connect");
    assert.equal(await get("/healthz"), 200);
    assert.equal(await get("/metrics"), 401);
    assert.equal(await get("/metrics", "client"), 200);
  });

  test("the CLI: --cert/--key or CONVEER_CLIENT_CERT/KEY, over gRPC and over --server https://…", async () => {
    const base = { ACCOUNT_SERVICE_GRPC_ADDR: sys.addr("account"), CONVEER_CA: f("ca.pem"), CONVEER_DATA_DIR: join(dir, "cli") };
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const c = runCli([...args, "accounts", "list", "--output", "json", "--login-prefix", "mtls-"], { ...base, ...env });
      return { code: await c.exited, stdout: c.stdout(), stderr: c.stderr() };
    };
    const server = ["--server", `https://127.0.0.1:${sys.app.httpPort}`];
    for (const via of [[], server]) {
      const none = await run(via);
      assert.equal(none.code, 1, `${via.join(" ")}: ${none.stdout}`);
      assert.match(none.stderr, /^conveer: /m);
      const stranger = await run([...via, "--cert", f("stranger.pem"), "--key", f("stranger.key")]);
      assert.equal(stranger.code, 1, via.join(" "));
      const good = await run([...via, "--cert", f("client.pem"), "--key", f("client.key")]);
      assert.equal(good.code, 0, good.stderr);
      assert.deepEqual(good.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { login: string }).login), ["mtls-grpc", "mtls-connect"]);
    }
    const fromEnv = await run(server, { CONVEER_CLIENT_CERT: f("client.pem"), CONVEER_CLIENT_KEY: f("client.key") });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const half = await run(["--cert", f("client.pem")]);
    assert.equal(half.code, 2, "bad usage");
    assert.match(half.stderr, /--cert and --key go together/);
  });

  test("replicas (separate apps on one PostgreSQL, reaching each other over gRPC) present CONVEER_CLIENT_CERT; one without it is refused", { skip: NEEDS_PG }, async () => {
    const url = await freshPostgresDatabase();
    const accountPort = await freePort();
    const common = { ...serverEnv(), DATABASE_URL: url, CONVEER_MASTER_KEY: "46".repeat(32), CONVEER_CA: f("ca.pem"), CONVEER_HTTP_ADDR: "127.0.0.1:0", ACCOUNT_SERVICE_GRPC_ADDR: `127.0.0.1:${accountPort}`, PROXY_SERVICE_GRPC_ADDR: "127.0.0.1:0", CONVEER_PROXY_ALLOW_PRIVATE: "true" };
    const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
    const accounts = await startApp({ config: loadConfig({ ...common, CONVEER_DATA_DIR: join(dir, "a") }), services: ["account"], log });
    const withCert = await startApp({ config: loadConfig({ ...common, CONVEER_DATA_DIR: join(dir, "b"), CONVEER_CLIENT_CERT: f("client.pem"), CONVEER_CLIENT_KEY: f("client.key") }), services: ["proxy"], log });
    const withoutCert = await startApp({ config: loadConfig({ ...common, CONVEER_DATA_DIR: join(dir, "c") }), services: ["proxy"], log });
    try {
      const acc = await remoteClient(AccountService, { addr: `127.0.0.1:${accountPort}`, tls: true, caFile: f("ca.pem"), certFile: f("client.pem"), keyFile: f("client.key"), sessions }).createAccount({ platform: "vk", login: "peer", password: "pw" });
      const proxies = (port: number) => remoteClient(ProxyService, { addr: `127.0.0.1:${port}`, tls: true, caFile: f("ca.pem"), certFile: f("client.pem"), keyFile: f("client.key"), sessions });
      await proxies(withCert.ports.proxy!).addProxies({ proxies: [{ url: "http://127.0.0.1:30201", capacity: 5 }] });
      // AllocateProxy asks AccountService (the other app) whether the account is live.
      const p = await proxies(withCert.ports.proxy!).allocateProxy({ accountId: acc.id, platform: "vk" });
      assert.equal(p.port, 30201);
      await rejectsWith(proxies(withoutCert.ports.proxy!).allocateProxy({ accountId: acc.id, platform: "vk" }), Code.Unavailable);
    } finally {
      for (const app of [withoutCert, withCert, accounts]) await app.stop(1000);
      await dropPostgresDatabase(url);
    }
  });
});
