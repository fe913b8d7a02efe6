/**
 * The API on the HTTP port: every service over Connect (JSON with plain fetch and curl, binary with
 * the Connect client), gRPC-Web and gRPC, with the gRPC ports' auth, scopes, codes and metrics;
 * StreamEvents over Connect and gRPC-Web; the Host check in open mode; CORS only for listed
 * origins; security headers on every answer; and the README's curl examples, run with curl.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { request } from "node:http";
import type { IncomingHttpHeaders } from "node:http";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createToken } from "../src/auth/tokens.ts";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import type { WarmingEvent } from "../src/gen/conveer/v1/warming_pb.js";
import { createIdGenerator } from "../src/store/ids.ts";
import { BadRequestSchema, ResourceInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const run = promisify(execFile);
const newId = createIdGenerator();
const ORIGIN = "https://console.example.com";
const MISSING = "0123456789abcdef01234567";

type Answer = { status: number; headers: IncomingHttpHeaders; body: string };

/** A raw HTTP/1.1 request (fetch cannot set Host). */
function raw(port: number, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path, headers: opts.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

function assertSecurityHeaders(h: IncomingHttpHeaders | Headers, what: string): void {
  const get = (k: string) => (h instanceof Headers ? h.get(k) : (h[k] as string | undefined));
  assert.equal(get("x-content-type-options"), "nosniff", what);
  assert.equal(get("x-frame-options"), "DENY", what);
  assert.equal(get("referrer-policy"), "no-referrer", what);
  assert.match(get("content-security-policy") ?? "", /default-src 'none'.*frame-ancestors 'none'/, what);
  assert.equal(get("cache-control"), "no-store", what);
}

async function rejectsWith(p: Promise<unknown>, code: Code, message?: string): Promise<ConnectError> {
  let got: ConnectError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    if (message !== undefined) assert.equal(err.rawMessage, message);
    got = err;
    return true;
  });
  return got!;
}

/** Reads StreamEvents until an event for the task arrives (the task is started once the stream is open). */
async function streamSeesTaskStart(warming: Client<typeof WarmingService>, start: () => Promise<string>): Promise<WarmingEvent[]> {
  const ac = new AbortController();
  const got: WarmingEvent[] = [];
  let taskId = "";
  const reading = (async () => {
    try {
      for await (const e of warming.streamEvents({}, { signal: ac.signal })) {
        got.push(e);
        if (taskId && e.taskId === taskId) ac.abort();
      }
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  taskId = await start();
  const timer = setTimeout(() => ac.abort(), 10_000);
  await reading;
  clearTimeout(timer);
  return got.filter((e) => e.taskId === taskId);
}

describe("the HTTP port, open mode", () => {
  let sys: TestSystem;
  let base: string;
  let port: number;
  const transports: Record<string, () => Transport> = {
    "Connect JSON over HTTP/1.1": () => createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
    "Connect binary over HTTP/2": () => createConnectTransport({ baseUrl: base, httpVersion: "2", useBinaryFormat: true }),
    "gRPC-Web over HTTP/1.1": () => createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }),
    "gRPC over HTTP/2": () => createGrpcTransport({ baseUrl: base }),
  };

  before(async () => {
    sys = await startTestSystem("pglite", { env: { CONVEER_AUTH: "open", CONVEER_HTTP_CORS_ORIGINS: `${ORIGIN},http://localhost:3000` }, services: ["account", "proxy", "warming"] });
    port = sys.app.httpPort;
    base = `http://127.0.0.1:${port}`;
  });
  after(() => sys.stop());

  test("unary over Connect JSON with plain fetch (the curl shape); errors as Connect errors with the gRPC ports' code and message", async () => {
    const acc = await sys.accounts.createAccount({ platform: "vk", login: "json", password: "pw" });
    const res = await fetch(`${base}/conveer.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accountId: acc.id }) });
    assert.equal(res.status, 200);
    assertSecurityHeaders(res.headers, "unary answer");
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.id, acc.id);
    assert.equal(body.login, "json");
    assert.equal(body.status, "ACCOUNT_STATUS_ACTIVE");
    assert.equal(body.password, undefined, "GetAccount carries no credentials");

    const viaGrpc = await rejectsWith(sys.accounts.getAccount({ accountId: MISSING }), Code.NotFound);
    const nf = await fetch(`${base}/conveer.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accountId: MISSING }) });
    assert.equal(nf.status, 404);
    const nfBody = (await nf.json()) as { code: string; message: string; details?: { type: string }[] };
    assert.deepEqual([nfBody.code, nfBody.message], ["not_found", viaGrpc.rawMessage]);
    assert.deepEqual(nfBody.details?.map((d) => d.type), ["google.rpc.ResourceInfo"], "the error's details, as Connect sends them in JSON");
    // The request check runs here too: a NUL in a string is refused before any handler.
    const bad = await fetch(`${base}/conveer.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accountId: "a\u0000b" }) });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, "invalid_argument");
    // Calls over HTTP are counted like the gRPC ports' ones.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /conveer_grpc_calls_total\{service="conveer\.AccountService",method="GetAccount",code="NOT_FOUND"\} [2-9]/);
  });

  test("Connect JSON refuses an unknown key or enum name instead of dropping it (a dropped filter answered every row)", async () => {
    await sys.accounts.createAccount({ platform: "vk", login: "strict-json", password: "pw" });
    const post = async (method: string, body: unknown) => {
      const res = await fetch(`${base}/conveer.AccountService/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { code?: string; message?: string; accounts?: unknown[] } };
    };
    // "BANNED" is not the proto JSON name (ACCOUNT_STATUS_BANNED): no account is BANNED, so an
    // answer with accounts in it is the filter dropped.
    const enumName = await post("ListAccounts", { status: "BANNED" });
    assert.equal(enumName.status, 400, JSON.stringify(enumName.body));
    assert.equal(enumName.body.code, "invalid_argument");
    assert.match(enumName.body.message ?? "", /AccountStatus.*"BANNED"/);
    const typo = await post("ListAccounts", { loginPrefx: "strict" });
    assert.equal(typo.status, 400, JSON.stringify(typo.body));
    assert.match(typo.body.message ?? "", /"loginPrefx" is unknown/);
    // The proto names and the JSON names both still work.
    const ok = await post("ListAccounts", { status: "ACCOUNT_STATUS_BANNED", login_prefix: "strict" });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body.accounts ?? [], []);
  });

  for (const [name, make] of Object.entries(transports)) {
    test(`unary over ${name}: the same answers and codes`, async () => {
      const accounts = createClient(AccountService, make());
      const acc = await accounts.createAccount({ platform: "telegram", login: `via-${name.replace(/\W+/g, "-")}`, password: "pw" });
      assert.equal((await accounts.getAccount({ accountId: acc.id })).login, acc.login);
      assert.equal((await sys.accounts.getAccount({ accountId: acc.id })).id, acc.id, "the gRPC port sees what HTTP created");
      const viaGrpc = await rejectsWith(sys.accounts.getAccount({ accountId: MISSING }), Code.NotFound);
      const notFound = await rejectsWith(accounts.getAccount({ accountId: MISSING }), Code.NotFound, viaGrpc.rawMessage);
      // The google.rpc details travel too: ResourceInfo for NOT_FOUND, BadRequest for bad input.
      assert.deepEqual(notFound.findDetails(ResourceInfoSchema).map((d) => d.resourceName), [MISSING]);
      const bad = await rejectsWith(accounts.createAccount({ platform: "nope", login: "x", password: "y" }), Code.InvalidArgument);
      assert.deepEqual(bad.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field), ["platform"]);
    });
  }

  for (const name of ["Connect JSON over HTTP/1.1", "gRPC-Web over HTTP/1.1"]) {
    test(`StreamEvents over ${name}`, async () => {
      const t = transports[name]();
      const accounts = createClient(AccountService, t);
      const warming = createClient(WarmingService, t);
      const acc = await accounts.createAccount({ platform: "vk", login: `stream-${name.replace(/\W+/g, "-")}`, password: "pw" });
      const events = await streamSeesTaskStart(warming, async () => (await warming.startWarming({ accountId: acc.id, scenarioId: "gentle" })).id);
      assert.ok(events.length >= 1, "the stream delivered the new task's event");
      assert.equal(events[0].eventType, "status_changed");
      assert.equal(events[0].data.to, "WARMING_STATUS_RUNNING");
    });
  }

  test("open mode: a non-loopback Host is refused with 403 (DNS rebinding); loopback names are served", async () => {
    const body = JSON.stringify({ accountId: MISSING });
    const headers = { "content-type": "application/json" };
    for (const host of ["evil.example", "evil.example:8080", "127.0.0.1.nip.io", "10.0.0.1:8080", "localhost.evil.example"]) {
      const r = await raw(port, { method: "POST", path: "/conveer.AccountService/GetAccount", headers: { ...headers, host }, body });
      assert.equal(r.status, 403, host);
      assert.match(r.body, /loopback/);
      assertSecurityHeaders(r.headers, "403");
      assert.equal((await raw(port, { path: "/healthz", headers: { host } })).status, 403, `/healthz for ${host}`);
    }
    for (const host of ["localhost", `localhost:${port}`, `127.0.0.1:${port}`, "127.1.2.3", `[::1]:${port}`, "LOCALHOST."]) {
      const r = await raw(port, { method: "POST", path: "/conveer.AccountService/GetAccount", headers: { ...headers, host }, body });
      assert.equal(r.status, 404, `${host}: ${r.body}`);
      assert.equal(JSON.parse(r.body).code, "not_found");
    }
  });

  test("CORS: none for an unlisted or absent Origin; a listed one gets Connect's CORS headers, preflight included", async () => {
    const call = (origin?: string) =>
      raw(port, { method: "POST", path: "/conveer.AccountService/GetAccount", headers: { "content-type": "application/json", ...(origin ? { origin } : {}) }, body: JSON.stringify({ accountId: MISSING }) });
    for (const origin of [undefined, "https://evil.example", `${ORIGIN}.evil.example`]) {
      const r = await call(origin);
      assert.equal(r.status, 404);
      for (const k of Object.keys(r.headers)) assert.ok(!k.startsWith("access-control-"), `${origin}: ${k}`);
      const pre = await raw(port, { method: "OPTIONS", path: "/conveer.AccountService/GetAccount", headers: { ...(origin ? { origin } : {}), "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" } });
      for (const k of Object.keys(pre.headers)) assert.ok(!k.startsWith("access-control-"), `preflight ${origin}: ${k}`);
    }
    const pre = await raw(port, { method: "OPTIONS", path: "/conveer.AccountService/GetAccount", headers: { origin: ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization,connect-protocol-version" } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], ORIGIN);
    assert.match(String(pre.headers["access-control-allow-methods"]), /POST/);
    const allowed = String(pre.headers["access-control-allow-headers"]).toLowerCase();
    for (const h of ["content-type", "authorization", "connect-protocol-version", "x-grpc-web"]) assert.ok(allowed.includes(h), h);
    assertSecurityHeaders(pre.headers, "preflight");
    const r = await call(ORIGIN);
    assert.equal(r.headers["access-control-allow-origin"], ORIGIN);
    assert.match(String(r.headers["vary"]), /Origin/);
    assert.match(String(r.headers["access-control-expose-headers"]).toLowerCase(), /grpc-status/);
  });

  test("security headers on every answer: RPCs, /healthz, /metrics, 404, 405", async () => {
    for (const [path, method, status] of [["/healthz", "GET", 200], ["/metrics", "GET", 200], ["/nope.txt", "GET", 404], ["/nope", "POST", 404], ["/healthz", "POST", 405], ["/conveer.Nope/Nothing", "POST", 404]] as const) {
      const r = await raw(port, { method, path });
      assert.equal(r.status, status, `${method} ${path}`);
      assertSecurityHeaders(r.headers, `${method} ${path}`);
    }
  });
});

describe("the HTTP port with tokens", () => {
  let sys: TestSystem;
  let base: string;
  const t: Record<string, string> = {};

  before(async () => {
    sys = await startTestSystem("pglite", { env: { CONVEER_AUTH: "tokens" }, services: ["account", "proxy", "warming"] });
    base = `http://127.0.0.1:${sys.app.httpPort}`;
    t.all = await createToken(sys.db, newId(), "all", ["*"]);
    t.warming = await createToken(sys.db, newId(), "warming-only", ["warming:read"]);
  });
  after(() => sys.stop());

  test("no token → 401 unauthenticated; a token without the scope → permission_denied; a good one works, on every transport", async () => {
    const res = await fetch(`${base}/conveer.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accountId: MISSING }) });
    assert.equal(res.status, 401);
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, "unauthenticated");
    assert.match(body.message, /Bearer/);
    const badScope = await fetch(`${base}/conveer.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${t.warming}` }, body: JSON.stringify({ accountId: MISSING }) });
    assert.equal(badScope.status, 403);
    assert.equal(((await badScope.json()) as { code: string }).code, "permission_denied");
    // A token is enough in open mode's absence: the Host check does not apply.
    const elsewhere = await raw(sys.app.httpPort, { method: "POST", path: "/conveer.AccountService/GetAccount", headers: { host: "conveer.internal", "content-type": "application/json", authorization: `Bearer ${t.all}` }, body: JSON.stringify({ accountId: MISSING }) });
    assert.equal(elsewhere.status, 404);

    const makers = [
      (h: Record<string, string>) => createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: true, interceptors: [(next) => (req) => (Object.entries(h).forEach(([k, v]) => req.header.set(k, v)), next(req))] }),
      (h: Record<string, string>) => createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [(next) => (req) => (Object.entries(h).forEach(([k, v]) => req.header.set(k, v)), next(req))] }),
      (h: Record<string, string>) => createGrpcTransport({ baseUrl: base, interceptors: [(next) => (req) => (Object.entries(h).forEach(([k, v]) => req.header.set(k, v)), next(req))] }),
    ];
    for (const make of makers) {
      await rejectsWith(createClient(AccountService, make({})).getAccount({ accountId: MISSING }), Code.Unauthenticated);
      await rejectsWith(createClient(AccountService, make({ authorization: `Bearer ${t.warming}` })).getAccount({ accountId: MISSING }), Code.PermissionDenied);
      await rejectsWith(createClient(AccountService, make({ authorization: `Bearer ${t.all}` })).getAccount({ accountId: MISSING }), Code.NotFound);
      const warming = createClient(WarmingService, make({ authorization: `Bearer ${t.warming}` }));
      assert.ok((await warming.listScenarios({})).scenarios.length >= 3);
    }
  });

  test("the README's curl examples work as written", async () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## HTTP/JSON API"), readme.indexOf("\n## ", readme.indexOf("## HTTP/JSON API") + 3));
    const examples = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1].trim().replaceAll("127.0.0.1:8080", `127.0.0.1:${sys.app.httpPort}`));
    assert.equal(examples.length, 3, "a create, a get and a stream");
    const env = { ...process.env, CONVEER_TOKEN: t.all };
    const sh = (cmd: string) => run("bash", ["-c", cmd], { env, encoding: "latin1" });

    const created = JSON.parse((await sh(examples[0])).stdout) as { id: string; login: string };
    assert.equal(created.login, "alice");
    const exampleId = /"accountId":"([0-9a-f]{24})"/.exec(examples[1])![1];
    const got = JSON.parse((await sh(examples[1].replace(exampleId, created.id))).stdout) as { id: string; login: string; status: string };
    assert.deepEqual([got.id, got.login, got.status], [created.id, "alice", "ACCOUNT_STATUS_ACTIVE"]);

    const streaming = sh(examples[2]);
    await new Promise((r) => setTimeout(r, 1000));
    const warming = createClient(WarmingService, createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${t.all}`), next(req))] }));
    const task = await warming.startWarming({ accountId: created.id, scenarioId: "gentle" });
    const out = (await streaming).stdout;
    assert.ok(out.includes(`"taskId":"${task.id}"`), out);
    assert.match(out, /"eventType":"status_changed"/);
    assert.match(out, /"code":"deadline_exceeded"/, "the stream ends at connect-timeout-ms");
  });
});
