/**
 * The proxy address policy through the real gRPC API: AddProxies refuses internal proxy hosts,
 * CheckHealth takes only configured targets and re-checks a proxy's address when it dials,
 * start-up refuses an internal check target, and the default target follows the sandbox.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Code } from "@connectrpc/connect";
import { startApp } from "../app.ts";
import { SERVICE_NAMES, loadConfig } from "../config/config.ts";
import { freshStore } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { startEchoTarget, startHttpConnectProxy, startRefusingProxy } from "../../test/support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "../../test/support/local-proxies.ts";
import { rejectsWith } from "../../test/support/grpc.ts";

/** The store's address as this test's config names it (a public-looking one: the store in use is injected, not dialed). */
const STORE_URL = "postgres://conveer@203.0.113.50:5432/conveer";

/** Internal proxy hosts, each with the kind of address the refusal must name. */
const INTERNAL: [string, RegExp][] = [
  ["http://127.0.0.1:5432", /proxy host 127\.0\.0\.1 is a loopback address/],
  ["socks5://10.0.0.1:1080", /proxy host 10\.0\.0\.1 is a private address/],
  ["http://169.254.169.254:80", /proxy host 169\.254\.169\.254 is a link-local address/],
  ["http://[::ffff:127.0.0.1]:3128", /proxy host ::ffff:127\.0\.0\.1 is a loopback address/],
  ["http://[::1]:3128", /proxy host ::1 is a loopback address/],
  ["http://[fd00::1]:3128", /proxy host fd00::1 is a private address/],
  ["http://0.0.0.0:3128", /proxy host 0\.0\.0\.0 is an unspecified address/],
  ["http://localhost:5432", /proxy host localhost is a loopback address/],
  // A name the system resolver (getaddrinfo's inet_aton) turns into 127.0.0.1.
  ["http://0x7f.1:5432", /proxy host 0x7f\.1 resolves to 127\.0\.0\.1, which is a loopback address/],
  // The store's own host:port, on a public address.
  ["http://203.0.113.50:5432", /proxy 203\.0\.113\.50:5432 is the store's own address \(DATABASE_URL\)/],
];

const SETTING = /set CONVEER_PROXY_ALLOW_PRIVATE=true/;

describe("proxy address policy (gRPC)", () => {
  let strict: TestSystem;
  let echo: LocalTarget;
  before(async () => {
    echo = await startEchoTarget();
    strict = await startTestSystem("pglite", {
      services: ["account", "proxy"],
      env: { DATABASE_URL: STORE_URL, CONVEER_PROXY_CHECK_TARGET: "example.com:80", CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000", CONVEER_PROXY_CHECK_TIMEOUT_MS: "1000" },
    });
  });
  after(async () => {
    await strict.stop();
    await echo.close();
  });

  test("AddProxies refuses loopback, private, link-local, unspecified, IPv4-mapped, localhost-resolving and store addresses, naming the setting", async () => {
    const res = await strict.proxies.addProxies({ proxies: [...INTERNAL.map(([url]) => ({ url })), { url: "http://203.0.113.51:3128" }, { url: "http://203.0.113.50:1080" }] });
    assert.deepEqual([res.added, res.failed], [2, INTERNAL.length]);
    INTERNAL.forEach(([url, why], i) => {
      assert.equal(res.results[i].proxyId, "", url);
      assert.match(res.results[i].error, new RegExp(`^proxies\\[${i}\\]\\.url ${why.source}`), url);
      assert.match(res.results[i].error, SETTING, url);
    });
    const listed = await strict.proxies.listProxies({});
    assert.deepEqual(listed.proxies.map((p) => `${p.host}:${p.port}`).sort(), ["203.0.113.50:1080", "203.0.113.51:3128"]);
  });

  test("CheckHealth takes only configured targets: the database, an internal port or any other host:port is INVALID_ARGUMENT naming the setting", async () => {
    const id = (await strict.proxies.listProxies({})).proxies.find((p) => p.port === 3128)!.id;
    for (const target of ["127.0.0.1:5432", "10.0.0.1:22", "169.254.169.254:80", `${echo.host}:${echo.port}`, "example.com:443"]) {
      await rejectsWith(strict.proxies.checkHealth({ proxyId: id, target }), Code.InvalidArgument, /^target .* is not an allowed check target.*CONVEER_PROXY_CHECK_TARGETS/);
    }
    // Refused before anything is dialed or recorded.
    assert.equal((await strict.proxies.listProxies({})).proxies.find((p) => p.id === id)!.consecutiveFailures, 0);
  });

  test("a proxy already in the store on an internal address (added before the policy, or a name now pointing inside) is refused at dial time", async () => {
    const proxy = await startHttpConnectProxy();
    try {
      // Written straight to the table, as a row from before the policy would be.
      for (const [id, host] of [["00000000000000000000aa01", "127.0.0.1"], ["00000000000000000000aa02", "0x7f.1"]]) {
        await strict.db.query("INSERT INTO proxies (id, protocol, host, port, username, password_sealed, key_id) VALUES ($1, 'http', $2, $3, '', '', '')", [id, host, proxy.port]);
        const h = await strict.proxies.checkHealth({ proxyId: id });
        assert.equal(h.healthy, false, host);
        assert.match(h.error, host === "127.0.0.1" ? /^proxy host 127\.0\.0\.1 is a loopback address/ : /^proxy host 0x7f\.1 resolves to 127\.0\.0\.1, which is a loopback address/);
        assert.match(h.error, SETTING);
      }
      assert.equal(proxy.connections, 0, "nothing was dialed");
    } finally {
      await proxy.close();
    }
  });

  test("with CONVEER_PROXY_ALLOW_PRIVATE=true the same proxies and the listed internal targets are accepted", async () => {
    const sys = await startTestSystem("pglite", {
      services: ["account", "proxy"],
      env: {
        DATABASE_URL: STORE_URL,
        CONVEER_PROXY_ALLOW_PRIVATE: "true",
        CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
        CONVEER_PROXY_CHECK_TARGETS: "127.0.0.1:1",
        CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000",
        CONVEER_PROXY_CHECK_TIMEOUT_MS: "1000",
      },
    });
    const proxy = await startHttpConnectProxy();
    try {
      const res = await sys.proxies.addProxies({ proxies: INTERNAL.map(([url]) => ({ url })) });
      assert.deepEqual([res.added, res.failed], [INTERNAL.length, 0], JSON.stringify(res.results.map((r) => r.error)));
      const id = (await sys.proxies.addProxies({ proxies: [{ url: proxy.url }] })).results[0].proxyId;
      assert.equal((await sys.proxies.checkHealth({ proxyId: id })).healthy, true);
      const closed = await sys.proxies.checkHealth({ proxyId: id, target: "127.0.0.1:1" });
      assert.deepEqual([closed.healthy, closed.target], [false, "127.0.0.1:1"]);
      await rejectsWith(sys.proxies.checkHealth({ proxyId: id, target: "127.0.0.1:5432" }), Code.InvalidArgument, /CONVEER_PROXY_CHECK_TARGETS/);
    } finally {
      await proxy.close();
      await sys.stop();
    }
  });
});

describe("proxy check target at start", () => {
  /** startApp on a fresh store with `extra` env; resolves to the error it refused with, or stops it and resolves undefined. */
  async function startError(extra: Record<string, string>): Promise<Error | undefined> {
    const store = await freshStore("pglite");
    const dataDir = await mkdtemp(join(tmpdir(), "conveer-test-"));
    const env: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "11".repeat(32), CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000", ...extra };
    for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
    try {
      const app = await startApp({ config: loadConfig(env), services: ["account", "proxy"], db: store.db, log: pino({ level: "silent" }) });
      await app.stop(500);
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      await store.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }

  test("CONVEER_PROXY_CHECK_TARGET or CONVEER_PROXY_CHECK_TARGETS naming the database or an internal address stops start-up, naming the variable", async () => {
    assert.match(String(await startError({ CONVEER_PROXY_CHECK_TARGET: "127.0.0.1:5432" })), /CONVEER_PROXY_CHECK_TARGET: check target 127\.0\.0\.1:5432 is a loopback address; set CONVEER_PROXY_ALLOW_PRIVATE=true/);
    assert.match(String(await startError({ CONVEER_PROXY_CHECK_TARGET: "localhost:5432" })), /CONVEER_PROXY_CHECK_TARGET: check target localhost:5432 is a loopback address/);
    assert.match(String(await startError({ DATABASE_URL: STORE_URL, CONVEER_PROXY_CHECK_TARGET: "203.0.113.50:5432" })), /CONVEER_PROXY_CHECK_TARGET: check target 203\.0\.113\.50:5432 is the store's own address/);
    assert.match(String(await startError({ CONVEER_PROXY_CHECK_TARGETS: "example.com:80,[fe80::1]:80" })), /CONVEER_PROXY_CHECK_TARGETS: check target \[fe80::1\]:80 is a link-local address/);
    assert.equal(await startError({ CONVEER_PROXY_CHECK_TARGET: "127.0.0.1:5432", CONVEER_PROXY_ALLOW_PRIVATE: "true" }), undefined);
    assert.equal(await startError({ CONVEER_PROXY_CHECK_TARGET: "203.0.113.80:80" }), undefined);
  });
});

describe("default check target", () => {
  let proxy: LocalProxy;
  before(async () => {
    proxy = await startHttpConnectProxy();
  });
  after(async () => {
    await proxy.close();
  });

  test("with every platform on the sandbox it is the sandbox's own address, so a healthy local proxy stays healthy offline", async () => {
    // Every service: the sandbox runs in-process and every platform driver is the sandbox.
    const sys = await startTestSystem("pglite", { env: { CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000", CONVEER_PROXY_CHECK_TIMEOUT_MS: "2000" } });
    try {
      const sandbox = new URL(sys.app.sandboxUrl);
      const id = (await sys.proxies.addProxies({ proxies: [{ url: proxy.url }] })).results[0].proxyId;
      const h = await sys.proxies.checkHealth({ proxyId: id });
      assert.deepEqual([h.target, h.healthy, h.error], [`${sandbox.hostname}:${sandbox.port}`, true, ""]);
      // The sandbox's address is an allowed target by name too, without listing it.
      assert.equal((await sys.proxies.checkHealth({ proxyId: id, target: `${sandbox.hostname}:${sandbox.port}` })).healthy, true);
    } finally {
      await sys.stop();
    }
  });

  test("without a sandbox in reach it stays example.com:80; an explicit CONVEER_PROXY_CHECK_TARGET always wins", async () => {
    const refusing = await startRefusingProxy();
    const noSandbox = await startTestSystem("pglite", { services: ["account", "proxy"], env: { CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000" } });
    const echo = await startEchoTarget();
    const explicit = await startTestSystem("pglite", { env: { CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`, CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000" } });
    try {
      // Through a refusing proxy: nothing leaves the machine, and the answer still names the target.
      const id = (await noSandbox.proxies.addProxies({ proxies: [{ url: refusing.url }] })).results[0].proxyId;
      assert.equal((await noSandbox.proxies.checkHealth({ proxyId: id })).target, "example.com:80");
      const id2 = (await explicit.proxies.addProxies({ proxies: [{ url: proxy.url }] })).results[0].proxyId;
      const h = await explicit.proxies.checkHealth({ proxyId: id2 });
      assert.deepEqual([h.target, h.healthy], [`${echo.host}:${echo.port}`, true]);
    } finally {
      await explicit.stop();
      await noSandbox.stop();
      await echo.close();
      await refusing.close();
    }
  });
});
