/**
 * Traces from a real `conveer start` configured only by OTEL_* variables, exported over OTLP/HTTP
 * (JSON) to a small receiver this test runs; and the same process without OTEL_*: the SDK is then
 * never loaded (an import hook records which OpenTelemetry modules the process resolves).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { STEPS } from "../src/platforms/registration.ts";
import { remoteClient } from "../src/server/clients.ts";
import { eventually, freePort } from "./support/grpc.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";
import { startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy } from "./support/local-proxies.ts";

const HOOK = fileURLToPath(new URL("./support/record-imports.ts", import.meta.url));

/** A span as OTLP/JSON carries it (ids in hex), with its resource's service.name. */
type OtlpSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; service: string };
type KeyValue = { key: string; value: { stringValue?: string } };
type ExportRequest = { resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: Omit<OtlpSpan, "service">[] }[] }[] };

/** A minimal OTLP/HTTP trace receiver: POST /v1/traces with JSON bodies; keeps every span. */
async function startReceiver(): Promise<{ port: number; spans: OtlpSpan[]; close(): Promise<void> }> {
  const spans: OtlpSpan[] = [];
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces" || !String(req.headers["content-type"]).startsWith("application/json")) {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ExportRequest;
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "";
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ ...s, service });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, "127.0.0.1", r));
  return { port, spans, close: () => new Promise((r) => srv.close(() => r())) };
}

describe("traces from a conveer process configured by OTEL_*", () => {
  const clis: Cli[] = [];
  const dirs: string[] = [];
  const sessions: Http2SessionManager[] = [];
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let proxy: LocalProxy;

  before(async () => {
    receiver = await startReceiver();
    proxy = await startHttpConnectProxy();
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(clis);
    await receiver?.close();
    await proxy?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** Starts `conveer start` with `otel` on top of a fresh system's env, recording the OpenTelemetry modules it resolves. */
  async function start(otel: Record<string, string>) {
    const dir = await mkdtemp(join(tmpdir(), "conveer-otlp-"));
    dirs.push(dir);
    const sandboxPort = await freePort();
    const sys = await systemEnv(dir, { CONVEER_DB_POOL_SIZE: "12", CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_SANDBOX_ADDR: `127.0.0.1:${sandboxPort}`, ...otel });
    const imports = join(dir, "imports.log");
    const cli = runCli(["start"], { ...sys.env, NODE_OPTIONS: `--import=${HOOK}`, TEST_IMPORTS_LOG: imports });
    clis.push(cli);
    await waitHealthy(cli, sys.http);
    const loaded = async () => (await readFile(imports, "utf8").catch(() => "")).split("\n").filter(Boolean);
    return { cli, sys, sandbox: `http://127.0.0.1:${sandboxPort}`, loaded };
  }

  test("OTLP/HTTP: a Register sent with a traceparent arrives as one trace with every step, and the sandbox got it", async () => {
    const { cli, sys, sandbox, loaded } = await start({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "conveer-otlp-test",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    });
    assert.ok((await loaded()).includes("@opentelemetry/sdk-node"), "the SDK is loaded when OTEL_* asks for traces");
    const proxies = remoteClient(ProxyService, { addr: sys.addr("proxy"), sessions });
    assert.equal((await proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 1 }] })).added, 1);

    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const vk = remoteClient(VKService, { addr: sys.addr("vk"), sessions });
    const res = await vk.register({ login: "otlp_user" }, { timeoutMs: 30_000, headers: { traceparent: `00-${traceId}-${callerSpan}-01` } });
    assert.ok(res.success, `${res.failedStep}: ${res.error}`);

    const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
    await eventually(() => inTrace().some((s) => s.name === "register store"), 10_000, "the register spans exported");
    await eventually(() => inTrace().some((s) => s.name === "conveer.VKService/Register"), 10_000, "the server span exported");
    const spans = inTrace();
    const server = spans.find((s) => s.name === "conveer.VKService/Register")!;
    assert.equal(server.parentSpanId, callerSpan, "the server span continues the caller's trace");
    assert.equal(server.kind, 2, "SPAN_KIND_SERVER");
    assert.equal(server.service, "conveer-otlp-test", "OTEL_SERVICE_NAME names the resource");
    for (const step of STEPS) assert.ok(spans.some((s) => s.name === `register ${step}`), `step ${step} exported`);
    assert.ok(spans.some((s) => s.name === "POST /v1/vk/signups/{id}/confirm"));
    assert.ok(spans.some((s) => s.name === "INSERT registrations"));

    const received = (await (await fetch(`${sandbox}/v1/admin/traceparents`)).json()) as { received: { path: string; traceparent: string }[] };
    const signUps = received.received.filter((r) => r.path.startsWith("/v1/vk/signups"));
    assert.ok(signUps.length === 2 && signUps.every((r) => r.traceparent.startsWith(`00-${traceId}-`)), JSON.stringify(received));

    // The CLI with OTEL_* set: the command is one trace, its Connect call's span the parent of the server's.
    const cmd = runCli(["--server", `http://127.0.0.1:${sys.http}`, "warm", "list"], { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_SERVICE_NAME: "conveer-cli" });
    assert.equal(await cmd.exited, 0, cmd.stderr());
    const root = receiver.spans.find((s) => s.name === "conveer warm" && s.service === "conveer-cli");
    assert.ok(root, `the CLI command's span was exported before it exited; got ${receiver.spans.filter((s) => s.service === "conveer-cli").map((s) => s.name).join(", ")}`);
    const out = receiver.spans.find((s) => s.traceId === root.traceId && s.name === "conveer.WarmingService/ListWarmingTasks" && s.kind === 3);
    assert.ok(out && out.parentSpanId === root.spanId && out.service === "conveer-cli", "the CLI's client span");
    await eventually(() => receiver.spans.some((s) => s.traceId === root.traceId && s.kind === 2), 10_000, "the server span of the CLI's call");
    const served = receiver.spans.find((s) => s.traceId === root.traceId && s.kind === 2)!;
    assert.equal(served.parentSpanId, out.spanId, "the server continues the CLI's trace (traceparent over Connect)");
    assert.equal(served.service, "conveer-otlp-test");

    const line = cli.logs().find((l) => l.msg === "call" && l.method === "/conveer.VKService/Register");
    assert.equal(line?.trace_id, traceId, "the call's log line carries its trace id");
    assert.equal(line?.span_id, server.spanId);
    assert.equal((await terminate(cli)).code, 0);
  });

  test("without OTEL_*: the SDK is never loaded, no traceparent goes out, log lines carry no trace ids", async () => {
    const off = { OTEL_TRACES_EXPORTER: "", OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "", OTEL_SDK_DISABLED: "" };
    const { cli, sys, loaded } = await start(off);
    const accounts = remoteClient(AccountService, { addr: sys.addr("account"), sessions });
    await accounts.getAccount({ accountId: "0".repeat(24) }, { headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" } }).catch(() => {});
    await eventually(() => cli.logs().some((l) => l.msg === "call"), 5000, "the call logged");
    const modules = await loaded();
    assert.ok(modules.includes("@opentelemetry/api"), `the hook saw the API (it works): ${modules.join(", ")}`);
    assert.deepEqual(modules.filter((m) => !m.startsWith("@opentelemetry/api")), [], "nothing but the API was loaded");
    assert.ok(cli.logs().every((l) => l.trace_id === undefined));
    assert.equal((await terminate(cli)).code, 0);
  });
});
