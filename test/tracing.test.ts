/**
 * Traces in one process: the OpenTelemetry Node SDK is started here (as `conveer start` starts it
 * from OTEL_*), with an in-memory exporter instead of OTLP, before the system starts. A Register
 * over real gRPC, through a real local proxy to the sandbox, must be one trace: the caller's span,
 * the server span, a span per conveyor step, the peer calls, store queries (with no SQL text or
 * values) and the driver's HTTP requests, whose traceparent the sandbox received. Every log line
 * written inside it carries its trace_id and span_id.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { startApp } from "../src/app.ts";
import type { App } from "../src/app.ts";
import { SERVICE_NAMES, loadConfig } from "../src/config/config.ts";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { cliClient } from "../src/cli/cli-client.ts";
import { STEPS } from "../src/platforms/registration.ts";
import { remoteClient } from "../src/server/clients.ts";
import { traceMixin, tracingEnabled } from "../src/telemetry/tracing.ts";
import { STORE_KINDS, freshStore } from "./support/store.ts";
import { eventually, freePort } from "./support/grpc.ts";
import { startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy } from "./support/local-proxies.ts";

const exporter = new InMemorySpanExporter();
const sdk = new NodeSDK({ spanProcessors: [new SimpleSpanProcessor({ exporter })], metricReaders: [], logRecordProcessors: [], autoDetectResources: false });

/** One scenario day of view_profile actions over the whole day. */
const SCENARIO = { id: "traced", name: "Traced", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 3 } }] };

const spanOf = (spans: ReadableSpan[], name: string) => spans.find((s) => s.name === name);
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

/** True when `s` descends from the span `ancestor` (following parents within `spans`). */
function descends(spans: ReadableSpan[], s: ReadableSpan, ancestor: ReadableSpan): boolean {
  const byId = new Map(spans.map((x) => [x.spanContext().spanId, x]));
  for (let p = parentOf(s); p; p = byId.get(p) && parentOf(byId.get(p)!)) if (p === ancestor.spanContext().spanId) return true;
  return false;
}

before(() => sdk.start());
after(() => sdk.shutdown());

for (const kind of STORE_KINDS) {
  describe(`traces through a Register on ${kind}`, () => {
    let app: App;
    let drop: () => Promise<void>;
    let dataDir: string;
    let proxy: LocalProxy;
    const lines: Record<string, unknown>[] = [];
    const sessions: Http2SessionManager[] = [];

    before(async () => {
      assert.ok(tracingEnabled(), "the SDK registered a tracer provider");
      const store = await freshStore(kind);
      drop = store.drop;
      dataDir = await mkdtemp(join(tmpdir(), "conveer-trace-"));
      await writeFile(join(dataDir, "traced.json"), JSON.stringify(SCENARIO));
      const env: Record<string, string> = {
        CONVEER_DATA_DIR: dataDir,
        CONVEER_HTTP_ADDR: "127.0.0.1:0",
        CONVEER_MASTER_KEY: "22".repeat(32),
        CONVEER_PROXY_ALLOW_PRIVATE: "true",
        CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000",
        CONVEER_SCENARIOS_DIR: dataDir,
        // A scenario day in 4 real seconds: the warming test's actions fall due at once.
        CONVEER_TIME_SCALE: "21600",
      };
      for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString().split("\n")) if (l.startsWith("{")) lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      });
      app = await startApp({ config: loadConfig(env), db: store.db, log: pino({ level: "info", mixin: traceMixin }, sink) });
      proxy = await startHttpConnectProxy();
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await app?.stop(1000);
      await proxy?.close();
      await drop?.();
      await rm(dataDir, { recursive: true, force: true });
    });

    test("one trace: caller → server → every step → peers, store, driver → the sandbox received its traceparent", async () => {
      const addr = (s: "account" | "proxy" | "vk") => `127.0.0.1:${app.ports[s]}`;
      const proxies = remoteClient(ProxyService, { addr: addr("proxy"), sessions });
      const added = await proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 1, country: "RU" }] });
      assert.equal(added.added, 1, JSON.stringify(added.results));
      exporter.reset();
      const vk = remoteClient(VKService, { addr: addr("vk"), sessions });
      const login = `traced_${kind}_login`;
      const res = await vk.register({ login, password: "tr4ce-secret-pw", proxyCountry: "RU" }, { timeoutMs: 30_000 });
      assert.ok(res.success, `${res.failedStep}: ${res.error}`);

      const client = exporter.getFinishedSpans().find((s) => s.name === "conveer.VKService/Register" && s.kind === 2);
      assert.ok(client, "the caller's client span");
      const traceId = client.spanContext().traceId;
      const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
      const server = spans.find((s) => s.name === "conveer.VKService/Register" && s.kind === 1);
      assert.ok(server, `a server span in the caller's trace; got ${spans.map((s) => s.name).join(", ")}`);
      assert.equal(parentOf(server), client.spanContext().spanId, "the server span's parent is the caller's span (traceparent over gRPC)");
      assert.equal(server.attributes["rpc.grpc.status_code"], 0);

      const register = spanOf(spans, "register")!;
      assert.ok(register && descends(spans, register, server));
      assert.equal(register.attributes["conveer.registration.id"], res.registrationId);
      for (const step of STEPS) {
        const s = spanOf(spans, `register ${step}`);
        assert.ok(s, `a span for step ${step}`);
        assert.equal(parentOf(s), register.spanContext().spanId, `step ${step} is a child of the register span`);
      }
      // In-process peers keep the trace: their spans sit under the step that called them.
      for (const [step, peer] of [["create_account", "conveer.AccountService/CreateAccount"], ["allocate_proxy", "conveer.ProxyService/AllocateProxy"], ["rent_number", "conveer.SMSService/GetNumber"], ["wait_code", "conveer.SMSService/GetCode"], ["store", "conveer.AccountService/UpdateStatus"]]) {
        const p = spanOf(spans, peer);
        assert.ok(p && descends(spans, p, spanOf(spans, `register ${step}`)!), `${peer} under step ${step}`);
      }
      // The store: spans named by a summary, inside the trace, carrying no SQL and no values.
      const queries = spans.filter((s) => s.attributes["db.system.name"] !== undefined);
      assert.ok(queries.length >= 10, `store spans: ${queries.length}`);
      assert.ok(queries.some((q) => q.name === "INSERT registrations"), queries.map((q) => q.name).join(", "));
      for (const s of spans) {
        const text = JSON.stringify(s.attributes) + s.name;
        assert.ok(!text.includes(login) && !text.includes("tr4ce-secret-pw"), `span ${s.name} records a parameter: ${text}`);
        assert.equal(s.attributes["db.query.text"], undefined);
      }
      // The driver's requests went through the proxy, each in a client span whose traceparent the sandbox got.
      const signUp = spanOf(spans, "POST /v1/vk/signups");
      const confirm = spanOf(spans, "POST /v1/vk/signups/{id}/confirm");
      assert.ok(signUp && descends(spans, signUp, spanOf(spans, "register sign_up")!));
      assert.ok(confirm && descends(spans, confirm, spanOf(spans, "register confirm")!));
      assert.equal(signUp.attributes["conveer.proxy"], `127.0.0.1:${proxy.port}`);
      assert.ok(proxy.connections >= 1, "the driver went through the proxy");
      const received = (await (await fetch(`${app.sandboxUrl}/v1/admin/traceparents`)).json()) as { received: { path: string; traceparent: string }[] };
      const atSandbox = received.received.filter((r) => r.path.startsWith("/v1/vk/signups"));
      assert.equal(atSandbox.length, 2, JSON.stringify(received));
      assert.deepEqual(
        atSandbox.map((r) => r.traceparent),
        [signUp, confirm].map((s) => `00-${traceId}-${s.spanContext().spanId}-01`),
        "the sandbox received the driver spans' traceparent",
      );

      // Log lines written inside the call carry its ids.
      const done = lines.find((l) => l.msg === "registered" && l.registration_id === res.registrationId);
      assert.ok(done, "the registered line");
      assert.equal(done.trace_id, traceId);
      assert.match(String(done.span_id), /^[0-9a-f]{16}$/);
      const callLine = lines.find((l) => l.msg === "call" && l.method === "/conveer.VKService/Register");
      assert.equal(callLine?.trace_id, traceId);
      assert.equal(callLine?.span_id, server.spanContext().spanId, "the call log line names the server span");
      assert.ok(lines.some((l) => l.msg === "conveer started" && l.trace_id === undefined), "a line outside any call has no trace id");
    });

    test("a warming action is a trace of its own, linked to the StartWarming call, and reaches the sandbox", async () => {
      const accounts = remoteClient(AccountService, { addr: `127.0.0.1:${app.ports.account}`, sessions });
      const page = await accounts.listAccounts({ platform: "vk", pageSize: 10 });
      const account = page.accounts.find((a) => a.status === 2);
      assert.ok(account, "the registered account is ACTIVE");
      exporter.reset();
      const warming = remoteClient(WarmingService, { addr: `127.0.0.1:${app.ports.warming}`, sessions });
      const task = await warming.startWarming({ accountId: account.id, scenarioId: "traced" });
      const start = exporter.getFinishedSpans().find((s) => s.name === "conveer.WarmingService/StartWarming" && s.kind === 1);
      assert.ok(start, "the StartWarming server span");
      let action: ReadableSpan | undefined;
      await eventually(() => (action = exporter.getFinishedSpans().find((s) => s.name === "warming action view_profile")) !== undefined, 20_000, "a warming action span");
      assert.equal(action!.parentSpanContext, undefined, "an action is a root span");
      assert.notEqual(action!.spanContext().traceId, start.spanContext().traceId, "an action is a trace of its own");
      assert.equal(action!.attributes["conveer.warming.task_id"], task.id);
      assert.deepEqual(
        action!.links.map((l) => [l.context.traceId, l.context.spanId]),
        [[start.spanContext().traceId, start.spanContext().spanId]],
        "linked to the call that started its task",
      );
      const traceId = action!.spanContext().traceId;
      const inAction = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
      assert.ok(inAction.some((s) => s.name === "conveer.VKService/ExecuteAction"), inAction.map((s) => s.name).join(", "));
      assert.ok(inAction.some((s) => s.name === "GET /v1/vk/users/{id}"), inAction.map((s) => s.name).join(", "));
      const received = (await (await fetch(`${app.sandboxUrl}/v1/admin/traceparents`)).json()) as { received: { path: string; traceparent: string }[] };
      assert.ok(received.received.some((r) => r.path.startsWith("/v1/vk/users/") && r.traceparent.includes(traceId)), "the action's request reached the sandbox with its traceparent");
      await warming.stopWarming({ taskId: task.id });
    });

    test("Connect on the HTTP port: the CLI's client span is the server span's parent", async () => {
      exporter.reset();
      const config = { ...loadConfig({}), server: `http://127.0.0.1:${app.httpPort}` };
      const accounts = cliClient(AccountService, "account", config);
      await accounts.getAccount({ accountId: "1".repeat(24) }).catch(() => {});
      const spans = exporter.getFinishedSpans().filter((s) => s.name === "conveer.AccountService/GetAccount");
      const client = spans.find((s) => s.kind === 2);
      const server = spans.find((s) => s.kind === 1);
      assert.ok(client && server, spans.map((s) => `${s.name}/${s.kind}`).join(", "));
      assert.equal(client.attributes["rpc.system"], "connect_rpc");
      assert.equal(server.attributes["rpc.system"], "connect_rpc");
      assert.equal(server.spanContext().traceId, client.spanContext().traceId);
      assert.equal(parentOf(server), client.spanContext().spanId, "traceparent carried in the Connect request's headers");
    });

    test("a streaming call's client span lasts until the stream ends, not just its headers", async () => {
      exporter.reset();
      const warming = remoteClient(WarmingService, { addr: `127.0.0.1:${app.ports.warming}`, sessions });
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 400);
      let received = 0;
      // From the first event: the warming test's events arrive at once (headers with them), then the stream stays open.
      await (async () => {
        for await (const _ of warming.streamEvents({ afterEventId: "0" }, { signal: ac.signal })) received += _ ? 1 : 0;
      })().catch(() => {});
      assert.ok(received > 0, "events were streamed before the end");
      clearTimeout(timer);
      const client = exporter.getFinishedSpans().find((s) => s.name === "conveer.WarmingService/StreamEvents" && s.kind === 2);
      assert.ok(client, "the stream's client span ended");
      const ms = client.duration[0] * 1000 + client.duration[1] / 1e6;
      assert.ok(ms >= 350, `the span covers the stream: ${ms} ms`);
    });

    test("a call without a traceparent starts a trace of its own at the server", async () => {
      exporter.reset();
      const accounts = remoteClient(AccountService, { addr: `127.0.0.1:${app.ports.account}`, sessions });
      await accounts.getAccount({ accountId: "0".repeat(24) }).catch(() => {});
      const server = exporter.getFinishedSpans().find((s) => s.name === "conveer.AccountService/GetAccount" && s.kind === 1)!;
      assert.ok(server);
      assert.equal(server.attributes["rpc.grpc.status_code"], 5, "NOT_FOUND");
      assert.equal(server.status.code, 0, "NOT_FOUND is the caller's error, not the server's");
      const q = exporter.getFinishedSpans().find((s) => s.name === "SELECT accounts" && s.spanContext().traceId === server.spanContext().traceId);
      assert.ok(q, "the store query is in the call's trace");
    });
  });
}

describe("traces across processes' gRPC hops (two systems in this process, AccountService apart)", () => {
  let accountsApp: App;
  let rest: App;
  let drop: () => Promise<void>;
  let dataDir: string;
  let proxy: LocalProxy;
  const sessions: Http2SessionManager[] = [];

  before(async () => {
    const store = await freshStore("pglite");
    drop = store.drop;
    dataDir = await mkdtemp(join(tmpdir(), "conveer-trace2-"));
    const env: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "22".repeat(32), CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000" };
    for (const s of SERVICE_NAMES) env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
    env.ACCOUNT_SERVICE_GRPC_ADDR = `127.0.0.1:${await freePort()}`;
    const log = pino({ level: "silent" });
    accountsApp = await startApp({ config: loadConfig(env), services: ["account"], db: store.db, log });
    rest = await startApp({ config: loadConfig(env), services: SERVICE_NAMES.filter((s) => s !== "account"), db: store.db, log });
    proxy = await startHttpConnectProxy();
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await rest?.stop(1000);
    await accountsApp?.stop(1000);
    await proxy?.close();
    await drop?.();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("a Register's calls to the AccountService of another system carry its traceparent: the peer's server spans are in the same trace", async () => {
    const proxies = remoteClient(ProxyService, { addr: `127.0.0.1:${rest.ports.proxy}`, sessions });
    assert.equal((await proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 1 }] })).added, 1);
    exporter.reset();
    const vk = remoteClient(VKService, { addr: `127.0.0.1:${rest.ports.vk}`, sessions });
    const res = await vk.register({ login: "two_systems" }, { timeoutMs: 30_000 });
    assert.ok(res.success, `${res.failedStep}: ${res.error}`);
    const spans = exporter.getFinishedSpans();
    const register = spans.find((s) => s.name === "register" && s.attributes["conveer.registration.id"] === res.registrationId)!;
    assert.ok(register);
    const traceId = register.spanContext().traceId;
    for (const method of ["CreateAccount", "UpdateCredentials", "UpdateStatus"]) {
      const name = `conveer.AccountService/${method}`;
      const client = spans.find((s) => s.name === name && s.kind === 2 && s.spanContext().traceId === traceId);
      const server = spans.find((s) => s.name === name && s.kind === 1 && s.spanContext().traceId === traceId);
      assert.ok(client, `${name}: a client span in the registration's trace`);
      assert.equal(client.attributes["rpc.system"], "grpc");
      assert.ok(server, `${name}: the peer's server span in the same trace`);
      assert.equal(parentOf(server), client.spanContext().spanId, `${name}: the peer's span is the child of the caller's`);
      assert.ok(spans.some((q) => q.attributes["db.system.name"] && parentOf(q) === server.spanContext().spanId), `${name}: the peer's queries under its server span`);
    }
  });
});
