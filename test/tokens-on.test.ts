/**
 * A whole system with tokens on (CONVEER_AUTH=tokens) and data in it: proxy passwords only for
 * `proxies:secrets` (each read audited) while the platform services still dial through
 * password-protected proxies; the in-process sandbox's admin and SMS endpoints need
 * CONVEER_SANDBOX_TOKEN; and the HTTP port, health and reflection answer without a token and
 * leak nothing.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { SMSService } from "../src/gen/conveer/v1/sms_pb.js";
import { ActionType } from "../src/gen/conveer/v1/platform_pb.js";
import { createToken } from "../src/auth/tokens.ts";
import { remoteClient } from "../src/server/clients.ts";
import { SERVICE_NAMES } from "../src/config/config.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { STORE_KINDS } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { startEchoTarget, startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";
import { healthCheck, healthClient, reflect, reflectionClient, rejectsWith } from "./support/grpc.ts";

const newId = createIdGenerator();
const SANDBOX_TOKEN = "sandbox-token-canary-0123456789";
const PROXY_PASSWORD = "proxy-pw-canary";
const ACCOUNT_PASSWORD = "account-pw-canary";
const LOGIN = "login-canary";
const DB_URL = "postgres://conveer:db-url-canary@127.0.0.1:5432/conveer";

for (const kind of STORE_KINDS) {
  describe(`tokens on (CONVEER_AUTH=tokens) on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    let proxy: LocalProxy;
    let other: LocalProxy;
    const sessions: Http2SessionManager[] = [];
    const t: Record<string, string> = {};
    let accountId: string;
    let proxyId: string;

    before(async () => {
      echo = await startEchoTarget();
      proxy = await startHttpConnectProxy({ username: "pu", password: PROXY_PASSWORD });
      other = await startHttpConnectProxy({ username: "pu2", password: `${PROXY_PASSWORD}-2` });
      sys = await startTestSystem(kind, {
        env: {
          CONVEER_AUTH: "tokens",
          CONVEER_SANDBOX_TOKEN: SANDBOX_TOKEN,
          // Set, not used to connect (the test hands the store in): it must not show anywhere anonymous.
          DATABASE_URL: DB_URL,
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
          CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000",
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
        },
      });
      for (const [name, scopes] of Object.entries({
        admin: ["*"],
        reader: ["proxies:read"],
        writer: ["proxies:write"],
        proxadmin: ["proxies:admin"],
        secrets: ["proxies:read", "proxies:secrets"],
        platforms: ["platforms:write"],
      })) {
        t[name] = await createToken(sys.db, newId(), name, scopes);
      }
      const admin = sys.as(t.admin);
      accountId = (await admin.accounts.createAccount({ platform: "vk", login: LOGIN, password: ACCOUNT_PASSWORD })).id;
      const added = await admin.proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 10 }] });
      proxyId = added.results[0].proxyId;
      assert.ok(proxyId, added.results[0].error);
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await sys?.stop();
      await proxy?.close();
      await other?.close();
      await echo?.close();
    });

    const auditRows = async () =>
      (await sys.db.query<{ token_name: string; proxy_id: string; account_id: string }>("SELECT actor AS token_name, target AS proxy_id, account_id FROM audit_log WHERE action = 'proxy_password.read' ORDER BY id")).rows;

    test("a proxy password goes only to proxies:secrets (or *): AllocateProxy, GetProxyForAccount and ForceRotate answer it empty otherwise, and each read is audited", async () => {
      const before = (await auditRows()).length;
      const w = await sys.as(t.writer).proxies.allocateProxy({ accountId, platform: "vk" });
      assert.equal(w.id, proxyId);
      assert.equal(w.username, "pu");
      assert.equal(w.password, "", "proxies:write is not a secret scope");
      const r = await sys.as(t.reader).proxies.getProxyForAccount({ accountId });
      assert.equal(r.id, proxyId);
      assert.equal(r.password, "", "proxies:read is not a secret scope");
      assert.equal((await sys.as(t.proxadmin).proxies.getProxyForAccount({ accountId })).password, "", "proxies:admin does not imply proxies:secrets");
      assert.equal((await auditRows()).length, before, "nothing revealed, nothing audited");

      assert.equal((await sys.as(t.secrets).proxies.getProxyForAccount({ accountId })).password, PROXY_PASSWORD);
      assert.equal((await sys.as(t.admin).proxies.allocateProxy({ accountId, platform: "vk" })).password, PROXY_PASSWORD);
      const rows = (await auditRows()).slice(before);
      assert.deepEqual(
        rows.map((x) => [x.token_name, x.proxy_id, x.account_id]),
        [
          ["secrets", proxyId, accountId],
          ["admin", proxyId, accountId],
        ],
      );

      // ForceRotate: the new proxy's password only for the secret scope.
      const added = await sys.as(t.admin).proxies.addProxies({ proxies: [{ url: other.url, capacity: 10 }] });
      const otherId = added.results[0].proxyId;
      const rotated = await sys.as(t.writer).proxies.forceRotate({ accountId, reason: "test" });
      assert.equal(rotated.id, otherId);
      assert.equal(rotated.password, "");
      const back = await sys.as(t.admin).proxies.forceRotate({ accountId, reason: "test" });
      assert.equal(back.id, proxyId);
      assert.equal(back.password, PROXY_PASSWORD);
      assert.deepEqual((await auditRows()).slice(before + 2).map((x) => [x.token_name, x.proxy_id]), [["admin", proxyId]]);
      for (const p of (await sys.as(t.secrets).proxies.listProxies({})).proxies) assert.equal(p.password, "", "ListProxies never shows one");
      await sys.as(t.admin).proxies.removeProxy({ proxyId: otherId });
    });

    test("the platform services still get the password (system principal): Register through a password-protected proxy works for a platforms-only token, audited as platform-service", async () => {
      const vk: Client<typeof VKService> = remoteClient(VKService, { addr: sys.addr("vk"), token: t.platforms, sessions });
      const tunnels = proxy.connections;
      const res = await vk.register({ login: "tokens_on_reg", firstName: "T", lastName: "O" }, { timeoutMs: 30_000 });
      assert.equal(res.success, true, `${res.failedStep}: ${res.error}`);
      assert.ok(proxy.connections > tunnels, "the driver dialed through the proxy with its password");
      const act = await vk.executeAction({ accountId: res.accountId, actionType: ActionType.VIEW_PROFILE }, { timeoutMs: 30_000 });
      assert.equal(act.success, true, act.error);
      const mine = (await auditRows()).filter((x) => x.account_id === res.accountId);
      assert.ok(mine.length >= 2 && mine.every((x) => x.token_name === "platform-service" && x.proxy_id === proxyId), JSON.stringify(mine));
      // The platforms-only token itself never reads a secret.
      await rejectsWith(sys.as(t.platforms).proxies.getProxyForAccount({ accountId: res.accountId }), Code.PermissionDenied, /proxies:read/);
    });

    test("the in-process sandbox's admin and SMS endpoints need CONVEER_SANDBOX_TOKEN; its platform endpoints stay the platform's public surface", async () => {
      const base = sys.app.sandboxUrl;
      const call = async (method: string, path: string, token?: string) => {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (token) headers.authorization = `Bearer ${token}`;
        const r = await fetch(`${base}${path}`, { method, headers, body: method === "POST" ? "{}" : undefined });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };
      for (const [method, path] of [
        ["GET", "/v1/admin/faults"],
        ["POST", "/v1/admin/rate-limit"],
        ["POST", "/v1/vk/admin/users/u1/ban"],
        ["POST", "/v1/vk/admin/users"],
        ["GET", "/v1/sms/balance"],
        ["POST", "/v1/sms/rentals"],
        ["POST", "/v1/sms/admin/top-up"],
      ] as const) {
        const anon = await call(method, path);
        assert.equal(anon.status, 401, `${method} ${path} without a token: ${JSON.stringify(anon.body)}`);
        assert.match(String(anon.body.message), /CONVEER_SANDBOX_TOKEN/);
        assert.equal((await call(method, path, t.admin)).status, 401, `${method} ${path} does not take a Conveer API token`);
      }
      assert.equal((await call("GET", "/v1/admin/faults", SANDBOX_TOKEN)).status, 200);
      assert.equal((await call("GET", "/v1/sms/balance", SANDBOX_TOKEN)).status, 200);
      // The SMS event stream (codes!) too.
      const stream = await new Promise<number>((resolve, reject) => {
        http.get(`${base}/v1/sms/events`, (res) => {
          resolve(res.statusCode ?? 0);
          res.destroy();
        }).on("error", reject);
      });
      assert.equal(stream, 401);
      // Public platform endpoints answer without it (their own users' sessions guard them).
      const login = await call("POST", "/v1/vk/sessions");
      assert.equal(login.status, 400, JSON.stringify(login.body));
      assert.equal(login.body.error, "invalid");
      const me = await call("GET", "/v1/vk/me");
      assert.equal(me.status, 401);
      assert.match(String(me.body.message), /session is missing/, "the platform's own check, not the sandbox token's");
      // Conveer's own SMS service works: its provider sends the token.
      const sms = remoteClient(SMSService, { addr: sys.addr("sms"), token: t.admin, sessions });
      assert.ok((await sms.getBalance({})).balance > 0);
    });

    test("the HTTP port, health and reflection answer without a token and leak no id, login, secret, token or database URL", async () => {
      const secrets = [accountId, proxyId, LOGIN, ACCOUNT_PASSWORD, PROXY_PASSWORD, SANDBOX_TOKEN, "db-url-canary", DB_URL, ...Object.values(t), ...Object.keys(t).map((n) => `"${n}"`)];
      const noLeak = (what: string, text: string) => {
        for (const s of secrets) assert.ok(!text.includes(s), `${what} shows ${JSON.stringify(s)}`);
      };
      const base = `http://127.0.0.1:${sys.app.httpPort}`;
      const hz = await fetch(`${base}/healthz`);
      assert.equal(hz.status, 200);
      noLeak("/healthz", await hz.text());
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      const m = await metrics.text();
      assert.match(m, /conveer_grpc_calls_total/);
      noLeak("/metrics", m);
      assert.doesNotMatch(m, /token=|account_id|login/);
      for (const name of SERVICE_NAMES) {
        const h = healthClient(sys.addr(name));
        try {
          assert.equal(await healthCheck(h, ""), "SERVING", name);
          assert.equal(await healthCheck(h, `conveer.${name === "sms" ? "SMS" : name === "vk" ? "VK" : name[0].toUpperCase() + name.slice(1)}Service`), "SERVING", name);
          const watched = await new Promise<string>((resolve, reject) => {
            const w = h.watch({ service: "" });
            w.once("data", (d: { status: string }) => {
              resolve(d.status);
              w.cancel();
            });
            w.once("error", (e: Error & { code?: number }) => (e.code === 1 ? undefined : reject(e)));
          });
          assert.equal(watched, "SERVING");
        } finally {
          h.close();
        }
        const r = reflectionClient(sys.addr(name));
        try {
          const list = await reflect(r, { list_services: "" });
          assert.ok(list.list_services_response!.service.some((s) => s.name === "grpc.health.v1.Health"), name);
          noLeak(`reflection list on ${name}`, JSON.stringify(list));
          const file = await reflect(r, { file_containing_symbol: "conveer.AccountService" });
          const fds = file.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
          assert.ok(fds.some((f) => f.service.some((s) => s.name === "AccountService")));
          noLeak(`reflection descriptors on ${name}`, Buffer.concat(file.file_descriptor_response!.file_descriptor_proto).toString("latin1"));
        } finally {
          r.close();
        }
      }
      // The API itself still needs the token.
      await rejectsWith(sys.accounts.getAccount({ accountId }), Code.Unauthenticated, /conveer token create/);
    });
  });
}
