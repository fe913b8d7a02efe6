/**
 * Every RPC issue 9 added outside AdminService (test/admin.test.ts covers that one), called twice
 * with the same request: over gRPC on the service's own port, and over Connect JSON on the HTTP
 * port with plain fetch (the curl shape; the request written as JSON, the answer read as JSON).
 * The two answers must be the same message. Also per RPC on the HTTP port: no token is
 * `unauthenticated` (401), a token without the area's scope `permission_denied` (403).
 * ListWarmingTasks, GetRegistration, ListRegistrations, ListAccounts (label selector, login
 * prefix), DeleteAccount, ListProxies (health, tag, allocation, account_ids), ListActivations.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromJson, toJson } from "@bufbuild/protobuf";
import type { DescMessage, DescService, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { createToken } from "../src/auth/tokens.ts";
import type { ServiceName } from "../src/config/config.ts";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { SMSService } from "../src/gen/conveer/v1/sms_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { startEchoTarget, startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";

type Call = { service: DescService; port: ServiceName; method: string; req: JsonObject };

describe("the RPCs issue 9 added, over gRPC and over Connect JSON: the same answers", () => {
  let sys: TestSystem;
  let echo: LocalTarget;
  let proxy: LocalProxy;
  let admin = "";
  let noScope = "";
  let base = "";
  const sessions: Http2SessionManager[] = [];
  const ids = { registration: "", registered: "", labelled: "", warmed: "", task: "", proxy: "", toDelete: ["", ""] };

  /** The call over gRPC on the service's port, the request built from the same JSON; the answer as proto JSON. */
  async function viaGrpc(c: Call): Promise<JsonValue> {
    const m = c.service.method[c.method];
    const client = remoteClient(c.service, { addr: sys.addr(c.port), token: admin, sessions }) as unknown as Record<string, (r: Message) => Promise<Message>>;
    const res = await client[c.method](fromJson(m.input as DescMessage, c.req));
    return toJson(m.output as DescMessage, res);
  }

  /** The call over Connect JSON on the HTTP port with fetch: HTTP status and the parsed body. */
  async function viaJson(c: Call, token: string): Promise<{ status: number; body: JsonObject }> {
    const m = c.service.method[c.method];
    const res = await fetch(`${base}/${c.service.typeName}/${m.name}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(c.req),
    });
    return { status: res.status, body: (await res.json()) as JsonObject };
  }

  /** Both ways; asserts they agree and the HTTP answer is 200; returns the JSON answer. */
  async function same(c: Call): Promise<JsonObject> {
    const json = await viaJson(c, admin);
    assert.equal(json.status, 200, `${c.method} over Connect JSON: ${JSON.stringify(json.body)}`);
    assert.deepEqual(json.body, await viaGrpc(c), `${c.method}: gRPC and Connect JSON answer alike`);
    return json.body;
  }

  before(async () => {
    echo = await startEchoTarget();
    proxy = await startHttpConnectProxy();
    sys = await startTestSystem("pglite", {
        backgroundChecks: false,
      env: {
        CONVEER_AUTH: "tokens",
        CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
        CONVEER_PROXY_ALLOW_PRIVATE: "true",
      },
    });
    base = `http://127.0.0.1:${sys.app.httpPort}`;
    const newId = createIdGenerator();
    admin = await createToken(sys.db, newId(), "admin", ["*"]);
    noScope = await createToken(sys.db, newId(), "elsewhere", ["admin"]);
    const as = sys.as(admin);
    const added = await as.proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 3, tags: ["json-api"] }] });
    ids.proxy = added.results[0].proxyId;
    assert.ok(ids.proxy, added.results[0].error);

    // A real registration: an account on the proxy, an activation, a registration record.
    const vk = remoteClient(VKService, { addr: sys.addr("vk"), token: admin, sessions });
    const reg = await vk.register({ login: "json_reg", batchId: "json-batch" }, { timeoutMs: 60_000 });
    assert.ok(reg.success, `${reg.failedStep}: ${reg.error}`);
    [ids.registration, ids.registered] = [reg.registrationId, reg.accountId];

    const labelled = await as.accounts.createAccount({ platform: "vk", login: "json_lbl_1", password: "pw", labels: { team: "red", batch: "j" } });
    await as.accounts.createAccount({ platform: "vk", login: "json_lbl_2", password: "pw", labels: { team: "blue", batch: "j" } });
    ids.labelled = labelled.id;
    // A warming task, paused so that it stands still while both transports read it.
    const warming = remoteClient(WarmingService, { addr: sys.addr("warming"), token: admin, sessions });
    ids.warmed = (await as.accounts.createAccount({ platform: "vk", login: "json_warm", password: "pw" })).id;
    ids.task = (await warming.startWarming({ accountId: ids.warmed, scenarioId: "gentle" })).id;
    await warming.pauseWarming({ taskId: ids.task });
    for (const [i, login] of ["json_del_1", "json_del_2"].entries()) {
      ids.toDelete[i] = (await as.accounts.createAccount({ platform: "telegram", login, password: "pw" })).id;
      await as.proxies.allocateProxy({ accountId: ids.toDelete[i], platform: "telegram" });
    }
  });

  after(async () => {
    for (const s of sessions) s.abort();
    await sys?.stop();
    await proxy?.close();
    await echo?.close();
  });

  test("ListWarmingTasks: filters by status and account; each task with its account's login and platform", async () => {
    const body = await same({ service: WarmingService, port: "warming", method: "listWarmingTasks", req: { status: "WARMING_STATUS_PAUSED", accountId: ids.warmed } });
    const tasks = body.tasks as JsonObject[];
    assert.deepEqual(
      tasks.map((t) => [t.id, t.status, t.accountLogin, t.platform]),
      [[ids.task, "WARMING_STATUS_PAUSED", "json_warm", "vk"]],
    );
    assert.equal(body.totalCount, "1", "int64 travels as a JSON string");
    const none = await same({ service: WarmingService, port: "warming", method: "listWarmingTasks", req: { status: "WARMING_STATUS_COMPLETED" } });
    assert.deepEqual([none.tasks, none.totalCount], [undefined, undefined], "an empty page: default fields are left out");
  });

  test("GetRegistration and ListRegistrations (by state, time and batch) on the VK service", async () => {
    const one = await same({ service: VKService, port: "vk", method: "getRegistration", req: { registrationId: ids.registration } });
    assert.deepEqual([one.id, one.state, one.accountId, one.proxyId], [ids.registration, "REGISTRATION_STATE_SUCCEEDED", ids.registered, ids.proxy]);
    assert.ok(one.activationId && one.createdAt && one.finishedAt, JSON.stringify(one));
    const list = await same({ service: VKService, port: "vk", method: "listRegistrations", req: { state: "REGISTRATION_STATE_SUCCEEDED", createdAfter: "2020-01-01T00:00:00Z", batchId: "json-batch", pageSize: 10 } });
    assert.deepEqual((list.registrations as JsonObject[]).map((r) => [r.id, r.batchId]), [[ids.registration, "json-batch"]]);
    const other = await same({ service: VKService, port: "vk", method: "listRegistrations", req: { batchId: "another" } });
    assert.equal(other.registrations, undefined);
  });

  test("ListAccounts by label selector and login prefix", async () => {
    const body = await same({ service: AccountService, port: "account", method: "listAccounts", req: { labelSelector: ["team=red", "batch=j"], loginPrefix: "json_lbl" } });
    assert.deepEqual((body.accounts as JsonObject[]).map((a) => [a.id, a.login]), [[ids.labelled, "json_lbl_1"]]);
    assert.equal(body.totalCount, "1");
  });

  test("ListProxies by health, tag and allocation, with the accounts each holds", async () => {
    const body = await same({ service: ProxyService, port: "proxy", method: "listProxies", req: { health: "PROXY_HEALTH_FILTER_HEALTHY", tag: "json-api", allocation: "PROXY_ALLOCATION_FILTER_ALLOCATED" } });
    const [p] = body.proxies as JsonObject[];
    assert.equal(p.id, ids.proxy);
    assert.deepEqual(new Set(p.accountIds as string[]), new Set([ids.registered, ...ids.toDelete]));
    assert.equal(p.password, undefined, "no password listed");
    const free = await same({ service: ProxyService, port: "proxy", method: "listProxies", req: { tag: "json-api", allocation: "PROXY_ALLOCATION_FILTER_FREE" } });
    assert.equal(free.proxies, undefined, "the one proxy is full");
  });

  test("ListActivations: the registration's rented number", async () => {
    const body = await same({ service: SMSService, port: "sms", method: "listActivations", req: { service: "vk" } });
    const acts = body.activations as JsonObject[];
    assert.equal(acts.length, 1);
    assert.match(String(acts[0].status), /^SMS_STATUS_/);
  });

  test("DeleteAccount over Connect JSON and over gRPC: each releases the account's proxy; a second delete changes nothing", async () => {
    const [a, b] = ids.toDelete;
    const json = await viaJson({ service: AccountService, port: "account", method: "deleteAccount", req: { accountId: a, reason: "json" } }, admin);
    assert.equal(json.status, 200, JSON.stringify(json.body));
    const acc = json.body.account as JsonObject;
    assert.deepEqual([json.body.deleted, json.body.releasedProxyId, acc.status, acc.statusReason], [true, ids.proxy, "ACCOUNT_STATUS_DELETED", "json"]);
    const grpc = (await viaGrpc({ service: AccountService, port: "account", method: "deleteAccount", req: { accountId: b, reason: "grpc" } })) as JsonObject;
    assert.deepEqual([grpc.deleted, grpc.releasedProxyId, (grpc.account as JsonObject).status], [true, ids.proxy, "ACCOUNT_STATUS_DELETED"]);
    // Deleted and holding nothing: the same answer both ways.
    const again = await same({ service: AccountService, port: "account", method: "deleteAccount", req: { accountId: a, reason: "again" } });
    assert.equal(again.deleted, undefined, "deleted=false is left out of proto JSON");
  });

  test("on the HTTP port each of them needs a token (401 unauthenticated) with its area's scope (403 permission_denied)", async () => {
    const calls: Call[] = [
      { service: WarmingService, port: "warming", method: "listWarmingTasks", req: {} },
      { service: VKService, port: "vk", method: "getRegistration", req: { registrationId: ids.registration } },
      { service: VKService, port: "vk", method: "listRegistrations", req: {} },
      { service: AccountService, port: "account", method: "listAccounts", req: { loginPrefix: "json" } },
      { service: AccountService, port: "account", method: "deleteAccount", req: { accountId: ids.labelled, reason: "no" } },
      { service: ProxyService, port: "proxy", method: "listProxies", req: {} },
      { service: SMSService, port: "sms", method: "listActivations", req: {} },
    ];
    for (const c of calls) {
      const anon = await viaJson(c, "");
      assert.deepEqual([anon.status, anon.body.code], [401, "unauthenticated"], `${c.method} without a token`);
      const denied = await viaJson(c, noScope);
      assert.deepEqual([denied.status, denied.body.code], [403, "permission_denied"], `${c.method} with only the admin scope`);
    }
    const kept = await same({ service: AccountService, port: "account", method: "listAccounts", req: { loginPrefix: "json_lbl_1" } });
    assert.equal((kept.accounts as JsonObject[])[0].status, "ACCOUNT_STATUS_ACTIVE", "the refused DeleteAccount changed nothing");
  });
});
