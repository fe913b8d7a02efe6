import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { getEventListeners } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { Code } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { ScalarType, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescField, DescMessage, DescService } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { AccountSchema, AccountService, GetAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { WarmingEventSchema, WarmingService } from "../gen/conveer/v1/warming_pb.js";
import { OPEN_PRINCIPAL, createAuthenticator } from "../auth/tokens.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { SERVICE_NAMES } from "../config/config.ts";
import type { ServiceName } from "../config/config.ts";
import { GRPC_SERVER_OPTIONS, MAX_MESSAGE_BYTES, grpcServiceOf } from "./grpc-server.ts";
import { createMetrics } from "./metrics.ts";
import { toStatus } from "./status.ts";
import { remoteClient } from "./clients.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { DESCRIPTORS } from "../app/descriptors.ts";
import { STORE_KINDS } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { codeName, healthCheck, healthClient, rawClient, rawServerStream, rawUnary, reflect, reflectionClient, rejectsWith } from "../../test/support/grpc.ts";
import type { RawResult } from "../../test/support/grpc.ts";
import { grpcPortServices } from "../../test/support/services.ts";


/** The service name (as --services takes it) whose port serves a descriptor: "conveer.SMSService" → "sms". */
function serviceNameOf(d: DescService): ServiceName {
  const short = d.typeName.replace(/^conveer\./, "").replace(/Service$/, "").toLowerCase();
  const name = SERVICE_NAMES.find((n) => n === short);
  assert.ok(name, `no port serves ${d.typeName}`);
  return name;
}

const BUILT = new Set(["conveer.AccountService", "conveer.ProxyService", "conveer.WarmingService", "conveer.SMSService", "conveer.VKService", "conveer.TelegramService", "conveer.MailService", "conveer.MaxService"]);

/** A small deterministic PRNG, so a failing fuzz case can be reproduced from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = <T,>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const randomBytes = (rnd: () => number, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));

/** Bytes that look like protobuf (tags, varints, length-delimited nests) without following any schema. */
function protobufish(rnd: () => number, depth = 0): Buffer {
  const w = new BinaryWriter();
  const n = Math.floor(rnd() * 6);
  for (let i = 0; i < n; i++) {
    const field = rnd() < 0.9 ? 1 + Math.floor(rnd() * 12) : 1 + Math.floor(rnd() * 536_870_000);
    const wt = pick(rnd, [0, 1, 2, 5]);
    w.uint32((field * 8 + wt) >>> 0);
    if (wt === 0) w.uint64(pick(rnd, [0n, 1n, 127n, 128n, 2n ** 31n, 2n ** 63n, 2n ** 64n - 1n, BigInt(Math.floor(rnd() * 1e9))]));
    else if (wt === 1) w.raw(randomBytes(rnd, 8));
    else if (wt === 5) w.raw(randomBytes(rnd, 4));
    else {
      const r = rnd();
      w.bytes(r < 0.4 && depth < 3 ? protobufish(rnd, depth + 1) : r < 0.7 ? Buffer.from(pick(rnd, INTERESTING_STRINGS)) : randomBytes(rnd, Math.floor(rnd() * 40)));
    }
  }
  return Buffer.from(w.finish());
}

const INTERESTING_STRINGS = [
  "", "vk", "telegram", "mail", "max", "nope", "\u0000", "vk\u0000", "a\u0000b", "😀", "x".repeat(5000), "%", "_", "'; DROP TABLE accounts; --",
  "0123456789abcdef01234567", "ffffffffffffffffffffffff", "socks5://127.0.0.1:1", "http://u:p@127.0.0.1:1", "https://127.0.0.1:1", "127.0.0.1:1", "[::1]:1",
  "RU", "ACCOUNT_STATUS_ACTIVE", "+79991234567", "123", " ", "\n", "\ud800x",
];

/** Values that pass validation, by proto field name: a fuzzed request starts from these and mutates some fields. */
function validValues(extras: { accountId: string; proxyId: string; pageToken: string }): Record<string, unknown[]> {
  return {
    platform: ["vk", "telegram", "mail", "max"],
    login: ["user1", "someone@example.com"],
    password: ["pw", "s3cret"],
    phone: ["+79991234567", ""],
    account_id: [extras.accountId],
    proxy_id: [extras.proxyId],
    page_token: ["", extras.pageToken],
    page_size: [1, 10],
    url: ["socks5://127.0.0.1:1", "http://u:p@127.0.0.1:1"],
    country: ["RU", "US"],
    preferred_country: ["RU", ""],
    provider: ["p1"],
    target: ["127.0.0.1:1"],
    reason: ["because"],
  };
}

/**
 * A message of the given schema (descriptor-guided fuzz): each field is, with probability `validProb`,
 * a value that passes validation, else an odd but well-formed one (NUL bytes, huge numbers, unknown
 * enum values, long strings...). Mostly-valid requests reach the store; all-odd ones test validation.
 */
function randomMessage(rnd: () => number, schema: DescMessage, valid: Record<string, unknown[]>, validProb: number, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  const odd = (t: ScalarType): unknown => {
    switch (t) {
      case ScalarType.STRING:
        return pick(rnd, INTERESTING_STRINGS);
      case ScalarType.BYTES:
        return randomBytes(rnd, Math.floor(rnd() * 20));
      case ScalarType.BOOL:
        return rnd() < 0.5;
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT:
        return pick(rnd, [0, -0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -1e308]);
      case ScalarType.INT64:
      case ScalarType.SINT64:
      case ScalarType.SFIXED64:
        return pick(rnd, [0n, 1n, -1n, 100n, 9223372036854775807n, -9223372036854775808n]);
      case ScalarType.UINT64:
      case ScalarType.FIXED64:
        return pick(rnd, [0n, 1n, 100n, 18446744073709551615n]);
      case ScalarType.UINT32:
      case ScalarType.FIXED32:
        return pick(rnd, [0, 1, 7, 1000, 1001, 4294967295]);
      default:
        return pick(rnd, [0, 1, -1, 5, 7, 1000, 1001, 2147483647, -2147483648]);
    }
  };
  const good = (f: DescField, t: ScalarType): unknown => {
    const known = valid[f.name];
    if (known) return pick(rnd, known);
    if (t === ScalarType.STRING) return `v${Math.floor(rnd() * 1000)}`;
    if (t === ScalarType.BOOL) return rnd() < 0.5;
    if ([ScalarType.INT64, ScalarType.SINT64, ScalarType.SFIXED64, ScalarType.UINT64, ScalarType.FIXED64].includes(t)) return BigInt(1 + Math.floor(rnd() * 10));
    if (t === ScalarType.BYTES) return new Uint8Array([1, 2, 3]);
    return 1 + Math.floor(rnd() * 10);
  };
  const scalar = (f: DescField, t: ScalarType) => (rnd() < validProb ? good(f, t) : odd(t));
  const enumValue = (f: DescField) => {
    const values = f.enum!.values.map((v) => v.number).filter((n) => n !== 0);
    return rnd() < validProb && values.length ? pick(rnd, values) : pick(rnd, [0, 1, 2, 3, 99, -1]);
  };
  const single = (f: DescField, kind: "scalar" | "enum" | "message"): unknown => {
    if (kind === "enum") return enumValue(f);
    if (kind === "message") return depth < 3 ? create(f.message!, randomMessage(rnd, f.message!, valid, validProb, depth + 1) as never) : undefined;
    return scalar(f, f.scalar!);
  };
  const value = (f: DescField): unknown => {
    switch (f.fieldKind) {
      case "scalar":
        return scalar(f, f.scalar);
      case "enum":
        return enumValue(f);
      case "message":
        return single(f, "message");
      case "list":
        return Array.from({ length: pick(rnd, [0, 1, 2, 3, 40]) }, () => single(f, f.listKind)).filter((x) => x !== undefined);
      case "map": {
        const m: Record<string, unknown> = {};
        for (let i = pick(rnd, [0, 1, 3]); i > 0; i--) {
          const v = single(f, f.mapKind);
          if (v !== undefined) m[String(rnd() < validProb ? `k${i}` : odd(f.mapKey))] = v;
        }
        return m;
      }
    }
  };
  for (const member of schema.members) {
    if (rnd() < 0.1) continue;
    if (member.kind === "oneof") {
      const f = pick(rnd, member.fields);
      const v = value(f);
      if (v !== undefined) init[member.localName] = { case: f.localName, value: v };
    } else {
      const v = value(member);
      if (v !== undefined) init[member.localName] = v;
    }
  }
  return init;
}

/** Codes a fuzzed call may end with: anything that is the caller's fault or "not built", never a bug, a hang or a store outage. */
function acceptable(r: RawResult, service: DescService, streaming = false): boolean {
  // A valid stream (StreamEvents) stays open until its deadline: the server ends it then, and the
  // client's own deadline timer fires at the same instant, so either OK or DEADLINE_EXCEEDED is
  // the answer (seen: 1 in 1,560 fuzzed calls).
  if (streaming && r.code === grpc.status.DEADLINE_EXCEEDED) return true;
  if ([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE, grpc.status.CANCELLED].includes(r.code)) return false;
  if (BUILT.has(service.typeName) && r.code === grpc.status.UNIMPLEMENTED) return false;
  if (!BUILT.has(service.typeName) && r.code !== grpc.status.UNIMPLEMENTED) return false;
  return true;
}

for (const kind of STORE_KINDS) {
  describe(`gRPC transport on ${kind}`, () => {
    let sys: TestSystem;
    let accountId: string;
    const clients: grpc.Client[] = [];
    const track = <C extends grpc.Client>(c: C): C => {
      clients.push(c);
      return c;
    };
    before(async () => {
      // The fuzzed proxies and check target are on loopback: allowed explicitly, so the calls reach the dialer.
      sys = await startTestSystem(kind, { env: { CONVEER_PROXY_CHECK_TIMEOUT_MS: "1000", CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_TARGETS: "127.0.0.1:1" } });
      accountId = (await sys.accounts.createAccount({ platform: "vk", login: "transport", password: "pw" })).id;
    });
    after(async () => {
      for (const c of clients) c.close();
      await sys.stop();
    });

    test("grpc.health.v1 Check: the process and the port's own service SERVING; another port's service and an unknown one NOT_FOUND", async () => {
      for (const port of ["account", "proxy", "warming"] as const) {
        const h = track(healthClient(sys.addr(port)));
        const own = DESCRIPTORS[port].typeName;
        assert.equal(await healthCheck(h, ""), "SERVING", `"" on ${port}`);
        assert.equal(await healthCheck(h, own), "SERVING", `${own} on ${port}`);
        for (const s of BUILT) {
          if (s === own) continue;
          await assert.rejects(healthCheck(h, s), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND, `${s} on ${port}`);
        }
        await assert.rejects(healthCheck(h, "conveer.NoSuchService"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
      }
    });

    test("grpc.health.v1 Watch streams the current status and does not repeat an unchanged one", async () => {
      const h = track(healthClient(sys.addr("account")));
      const watch = (service: string, ms: number) =>
        new Promise<string[]>((resolve) => {
          const seen: string[] = [];
          const call = h.watch({ service });
          call.on("data", (m: { status: string }) => seen.push(m.status));
          call.on("error", () => {});
          setTimeout(() => {
            call.cancel();
            resolve(seen);
          }, ms);
        });
      // The store probe re-checks "" every 2 s; a watcher must hear only changes (the health spec), not every probe.
      const [overall, account, warming, unknown] = await Promise.all([watch("", 2600), watch("conveer.AccountService", 500), watch("conveer.WarmingService", 500), watch("conveer.Nope", 500)]);
      assert.deepEqual(overall, ["SERVING"]);
      assert.deepEqual(account, ["SERVING"]);
      assert.deepEqual(warming, ["SERVICE_UNKNOWN"], "the warming service is not served on the account port");
      assert.deepEqual(unknown, ["SERVICE_UNKNOWN"]);
    });

    test("server reflection (v1 and v1alpha) lists only the port's service, health and reflection, and returns descriptors", async () => {
      for (const version of ["v1", "v1alpha"] as const) {
        const r = track(reflectionClient(sys.addr("proxy"), version));
        const list = await reflect(r, { list_services: "" });
        const names = list.list_services_response!.service.map((s) => s.name).sort();
        assert.deepEqual(names, ["conveer.ProxyService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"], version);
        const onAccount = await reflect(track(reflectionClient(sys.addr("account"), version)), { list_services: "" });
        const accountNames = onAccount.list_services_response!.service.map((s) => s.name);
        assert.ok(accountNames.includes("conveer.AccountService") && !accountNames.includes("conveer.ProxyService"), `${version} on account: ${accountNames.join(", ")}`);
        const file = await reflect(r, { file_containing_symbol: "conveer.ProxyService" });
        assert.equal(file.message_response, "file_descriptor_response", JSON.stringify(file.error_response));
        const fds = file.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
        const svc = fds.flatMap((f) => f.service).find((s) => s.name === "ProxyService");
        assert.ok(svc, "the descriptor holds ProxyService");
        assert.ok(svc.method.some((m) => m.name === "AllocateProxy"));
        const missing = await reflect(r, { file_containing_symbol: "conveer.Nope" });
        assert.equal(missing.message_response, "error_response");
        assert.equal(missing.error_response!.error_code, grpc.status.NOT_FOUND);
      }
    });

    test("a service registered without an implementation answers UNIMPLEMENTED on every method, naming it", async () => {
      // Every service is built now; the transport's path for one that is not (a binding with no impl) stays tested.
      const server = new grpc.Server(GRPC_SERVER_OPTIONS);
      const stop = new AbortController();
      const deps = { log: pino({ level: "silent" }), auth: createAuthenticator({ db: sys.db, mode: "auto" }), metrics: createMetrics(), shutdown: stop.signal };
      const { definition, handlers } = grpcServiceOf({ service: WarmingService }, deps);
      server.addService(definition, handlers);
      const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
      const c = track(rawClient(`127.0.0.1:${port}`));
      try {
        for (const m of WarmingService.methods) {
          const path = `/${WarmingService.typeName}/${m.name}`;
          const r = m.methodKind === "server_streaming" ? await rawServerStream(c, path, Buffer.alloc(0)) : await rawUnary(c, path, Buffer.alloc(0));
          assert.equal(codeName(r.code), "UNIMPLEMENTED", path);
          assert.match(r.details, new RegExp(`${WarmingService.typeName}\\.${m.name} has no implementation bound`), path);
        }
      } finally {
        server.forceShutdown();
      }
    });

    test("fuzz: random bytes to every method of every generated service get a status, never INTERNAL; the server stays healthy", async () => {
      const services = await grpcPortServices();
      assert.ok(services.length >= 8, `found ${services.length} services in src/gen`);
      const failures: string[] = [];
      const lengths = [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 64, 100, 255, 256, 1000, 4096, 65_536];
      let seed = 1;
      let calls = 0;
      for (const d of services) {
        const c = track(rawClient(sys.addr(serviceNameOf(d))));
        for (const m of d.methods) {
          const path = `/${d.typeName}/${m.name}`;
          const cases = Array.from({ length: 20 }, (_, i) => {
            const s = seed++;
            const rnd = prng(s);
            const body = i < 10 ? randomBytes(rnd, lengths[i % lengths.length] + Math.floor(rnd() * 3)) : protobufish(rnd);
            return { s, body };
          });
          const results = await Promise.all(
            // A stream that decodes to a valid request (StreamEvents) stays open for live events: it
            // gets a short deadline, and ending by that deadline is the right answer.
            cases.map(({ body }) => (m.methodKind === "server_streaming" ? rawServerStream(c, path, body, { deadlineMs: 1500 }) : rawUnary(c, path, body, { deadlineMs: 15_000 }))),
          );
          calls += results.length;
          results.forEach((r, i) => {
            if (m.methodKind === "server_streaming" && r.code === grpc.status.DEADLINE_EXCEEDED) return;
            if (!acceptable(r, d)) failures.push(`${path} seed=${cases[i].s} body=${cases[i].body.subarray(0, 64).toString("hex")}… → ${codeName(r.code)}: ${r.details}`);
          });
        }
      }
      assert.deepEqual(failures, [], `${failures.length} of ${calls} fuzzed calls failed`);
      const h = track(healthClient(sys.addr("account")));
      assert.equal(await healthCheck(h, ""), "SERVING");
      assert.equal((await sys.accounts.getAccount({ accountId })).login, "transport");
    });

    test("fuzz: schema-shaped requests with odd values (NUL bytes, huge numbers, bad enums, long strings) never answer INTERNAL", async () => {
      const proxy = await sys.proxies.addProxies({ proxies: [{ url: "socks5://127.0.0.1:1", country: "RU" }] });
      const valid = validValues({ accountId, proxyId: proxy.results[0].proxyId, pageToken: (await sys.accounts.listAccounts({ pageSize: 1 })).nextPageToken });
      const failures: string[] = [];
      let seed = 100_000;
      let calls = 0;
      for (const d of await grpcPortServices()) {
        const c = track(rawClient(sys.addr(serviceNameOf(d))));
        for (const m of d.methods) {
          const path = `/${d.typeName}/${m.name}`;
          for (const validProb of [0, 0.8, 0.95]) {
            const cases = Array.from({ length: 10 }, () => {
              const s = seed++;
              const init = randomMessage(prng(s), m.input, valid, validProb);
              return { s, init, body: Buffer.from(toBinary(m.input, create(m.input, init as never))) };
            });
            const results = await Promise.all(
              // A stream that decodes to a valid request (StreamEvents) stays open for live events: it
            // gets a short deadline, and ending by that deadline is the right answer.
            cases.map(({ body }) => (m.methodKind === "server_streaming" ? rawServerStream(c, path, body, { deadlineMs: 1500 }) : rawUnary(c, path, body, { deadlineMs: 15_000 }))),
            );
            calls += results.length;
            results.forEach((r, i) => {
              if (!acceptable(r, d, m.methodKind === "server_streaming")) {
                const shown = JSON.stringify(cases[i].init, (_k, v) => (typeof v === "bigint" ? `${v}n` : typeof v === "string" && v.length > 40 ? `${v.slice(0, 20)}…(${v.length})` : v));
                failures.push(`${path} seed=${cases[i].s} ${shown.slice(0, 300)} → ${codeName(r.code)}: ${r.details}`);
              }
            });
          }
        }
      }
      assert.deepEqual(failures, [], `${failures.length} of ${calls} fuzzed calls failed`);
      assert.equal((await sys.accounts.getAccount({ accountId })).login, "transport");
    });

    test("NUL characters in any string of a request are refused as INVALID_ARGUMENT naming the field (the store cannot hold them)", async () => {
      await rejectsWith(sys.accounts.createAccount({ platform: "vk", login: "a\u0000b", password: "pw" }), Code.InvalidArgument, /^login must not contain NUL/);
      await rejectsWith(sys.accounts.createAccount({ platform: "vk", login: "nul-label", password: "pw", labels: { team: "x\u0000" } }), Code.InvalidArgument, /^labels\["team"\] must not contain NUL/);
      await rejectsWith(sys.accounts.createAccount({ platform: "vk", login: "nul-key", password: "pw", additional: { "k\u0000": "v" } }), Code.InvalidArgument, /^additional \(a key\) must not contain NUL/);
      await rejectsWith(
        sys.accounts.importAccounts({ accounts: [{ platform: "vk", login: "ok", password: "pw" }, { platform: "vk", login: "bad", password: "p\u0000w" }] }),
        Code.InvalidArgument,
        /^accounts\[1\]\.password must not contain NUL/,
      );
      await rejectsWith(sys.proxies.addProxies({ proxies: [{ url: "socks5://127.0.0.1:1", provider: "\u0000" }] }), Code.InvalidArgument, /^proxies\[0\]\.provider/);
      // Nothing was written by the refused import.
      assert.equal((await sys.accounts.listAccounts({ platform: "vk", pageSize: 1000 })).accounts.filter((a) => a.login === "ok").length, 0);
      // The backstop for text that reaches SQL another way.
      assert.equal(toStatus({ code: "22P05", message: "unsupported Unicode escape sequence" }).code, grpc.status.INVALID_ARGUMENT);
      assert.equal(toStatus({ code: "22021", message: "invalid byte sequence" }).code, grpc.status.INVALID_ARGUMENT);
    });

    test("messages over 10 MB are refused with RESOURCE_EXHAUSTED; a 9 MB one passes the transport", async () => {
      const c = track(rawClient(sys.addr("account")));
      const path = "/conveer.AccountService/GetAccount";
      const big = await rawUnary(c, path, Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x41), { deadlineMs: 30_000 });
      assert.equal(codeName(big.code), "RESOURCE_EXHAUSTED", big.details);
      // A valid GetAccount request carrying 9 MB in an unknown field (number 99): decoded, answered OK.
      const w = new BinaryWriter();
      w.tag(99, WireType.LengthDelimited).bytes(Buffer.alloc(9 * 1024 * 1024, 0x42));
      const body = Buffer.concat([Buffer.from(toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId }))), Buffer.from(w.finish())]);
      const ok = await rawUnary(c, path, body, { deadlineMs: 30_000 });
      assert.equal(codeName(ok.code), "OK", ok.details);
      assert.equal(fromBinary(AccountSchema, ok.messages[0]).id, accountId);
      // The server is still fine afterwards.
      assert.equal((await sys.accounts.getAccount({ accountId })).id, accountId);
    });

    test("/healthz answers 200 with JSON; /metrics counts calls; other files 404 (paths without an extension are the console's routes), other methods 405", async () => {
      const base = `http://127.0.0.1:${sys.app.httpPort}`;
      const hz = await fetch(`${base}/healthz`);
      assert.equal(hz.status, 200);
      assert.match(hz.headers.get("content-type") ?? "", /application\/json/);
      const body = (await hz.json()) as { status: string; store: string; services: Record<string, string> };
      assert.equal(body.status, "SERVING");
      assert.equal(body.services["conveer.AccountService"], "SERVING");
      assert.equal(body.services["conveer.WarmingService"], "SERVING");
      await sys.accounts.getAccount({ accountId });
      await rejectsWith(sys.accounts.getAccount({ accountId: "0123456789abcdef01234567" }), Code.NotFound);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /conveer_grpc_calls_total\{service="conveer\.AccountService",method="GetAccount",code="OK"\} [1-9]/);
      assert.match(metrics, /conveer_grpc_calls_total\{service="conveer\.AccountService",method="GetAccount",code="NOT_FOUND"\} [1-9]/);
      assert.match(metrics, /conveer_grpc_call_duration_seconds_bucket/);
      assert.equal((await fetch(`${base}/nope.txt`)).status, 404);
      assert.equal((await fetch(`${base}/healthz`, { method: "POST" })).status, 405);
    });
  });
}

describe("recovery interceptor", () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, new Writable({ write: (chunk, _enc, cb) => (lines.push(JSON.parse(String(chunk))), cb()) }));
  const auth: Authenticator = { authenticate: async () => OPEN_PRINCIPAL, authorize: () => {}, isOpen: async () => true };
  const shutdown = new AbortController();
  let server: grpc.Server;
  let client: grpc.Client;

  before(async () => {
    const cause = new Error("db password is hunter2");
    const accounts = {
      service: AccountService,
      scopes: Object.fromEntries(AccountService.methods.map((m) => [m.localName, "accounts:read"])),
      impl: {
        getAccount: () => {
          throw new Error("SECRET-sync failure at /srv/conveer/secret.ts");
        },
        getCredentials: async () => {
          throw new Error("SECRET-async failure", { cause });
        },
        listAccounts: () => Promise.reject("SECRET a bare string"),
        createAccount: () => ({
          get id(): string {
            throw new Error("SECRET-getter failure"); // building the answer fails
          },
        }),
        getStatusHistory: () => ({ changes: [] }),
      },
    } as unknown as ServiceBinding;
    const warming = {
      service: WarmingService,
      scopes: Object.fromEntries(WarmingService.methods.map((m) => [m.localName, "warming:read"])),
      impl: {
        async *streamEvents() {
          yield { taskId: "t1" };
          throw new Error("SECRET-stream failure");
        },
        startWarming: () => {
          throw null;
        },
      },
    } as unknown as ServiceBinding;
    server = new grpc.Server(GRPC_SERVER_OPTIONS);
    const deps = { log, auth, metrics: createMetrics(), shutdown: shutdown.signal };
    for (const b of [accounts, warming]) {
      const { definition, handlers } = grpcServiceOf(b, deps);
      server.addService(definition, handlers);
    }
    const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    client = rawClient(`127.0.0.1:${port}`);
  });
  after(async () => {
    client.close();
    await new Promise<void>((r) => server.tryShutdown(() => r()));
  });

  const empty = Buffer.alloc(0);
  const noLeak = (r: RawResult) => {
    assert.equal(r.details, "internal error");
    const meta = JSON.stringify(r.metadata?.toJSON() ?? {});
    assert.doesNotMatch(meta, /SECRET|hunter2|\.ts|at /, `trailers leak: ${meta}`);
  };

  test("a synchronous throw, a rejection, a non-Error rejection and an unserializable answer become INTERNAL with a generic message", async () => {
    for (const method of ["GetAccount", "GetCredentials", "ListAccounts", "CreateAccount"]) {
      const r = await rawUnary(client, `/conveer.AccountService/${method}`, empty);
      assert.equal(codeName(r.code), "INTERNAL", `${method}: ${r.details}`);
      noLeak(r);
    }
    const t = await rawUnary(client, "/conveer.WarmingService/StartWarming", empty);
    assert.equal(codeName(t.code), "INTERNAL", t.details);
    noLeak(t);
  });

  test("a stream that fails midway delivers what it sent, then INTERNAL", async () => {
    const r = await rawServerStream(client, "/conveer.WarmingService/StreamEvents", empty);
    assert.equal(codeName(r.code), "INTERNAL", r.details);
    noLeak(r);
    assert.equal(r.messages.length, 1);
    assert.equal(fromBinary(WarmingEventSchema, r.messages[0]).taskId, "t1");
  });

  test("the server keeps serving, and the cause is logged (not sent)", async () => {
    const ok = await rawUnary(client, "/conveer.AccountService/GetStatusHistory", empty);
    assert.equal(codeName(ok.code), "OK", ok.details);
    const errors = lines.filter((l) => l.msg === "call failed with an internal error");
    assert.ok(errors.length >= 6, `logged ${errors.length} internal errors`);
    const logged = JSON.stringify(errors);
    assert.match(logged, /SECRET-sync failure/);
    assert.match(logged, /hunter2/, "the cause chain is logged");
    assert.ok(errors.every((e) => e.method && e.code === "INTERNAL"));
  });

  test("finished calls leave no timer and no listener on the shutdown signal behind (no per-call leak)", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    for (let i = 0; i < 30; i++) {
      await rawUnary(client, i % 2 ? "/conveer.AccountService/GetStatusHistory" : "/conveer.AccountService/GetAccount", empty, { deadlineMs: 60_000 });
    }
    await rawServerStream(client, "/conveer.WarmingService/StreamEvents", empty, { deadlineMs: 60_000 });
    // Each call's deadline (60 s) must not leave a live timer in the server once the call is answered.
    assert.ok(timers() - before < 10, `${timers() - before} timers left behind by 31 finished calls`);
    assert.equal(getEventListeners(shutdown.signal, "abort").length, 0);
  });
});

describe("TLS", () => {
  let dir: string;
  let sys: TestSystem;
  const sessions: Http2SessionManager[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "conveer-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: "ignore" });
    sys = await startTestSystem("pglite", { env: { CONVEER_TLS_CERT: join(dir, "cert.pem"), CONVEER_TLS_KEY: join(dir, "key.pem") }, services: ["account", "proxy"] });
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a TLS client that trusts the certificate works; plaintext and untrusting clients fail", async () => {
    const caFile = join(dir, "cert.pem");
    const secure = remoteClient(AccountService, { addr: sys.addr("account"), tls: true, caFile, sessions });
    const acc = await secure.createAccount({ platform: "vk", login: "tls", password: "pw" });
    assert.equal((await secure.getAccount({ accountId: acc.id })).login, "tls");
    const plain = remoteClient(AccountService, { addr: sys.addr("account"), sessions });
    await assert.rejects(plain.getAccount({ accountId: acc.id }));
    const untrusting = remoteClient(AccountService, { addr: sys.addr("account"), tls: true, sessions });
    await assert.rejects(untrusting.getAccount({ accountId: acc.id }));
    // Health over TLS with grpc-js, and the HTTP port is HTTPS too.
    const h = healthClient(sys.addr("proxy"), grpc.credentials.createSsl(readFileSync(caFile)));
    try {
      assert.equal(await healthCheck(h, "conveer.ProxyService"), "SERVING");
    } finally {
      h.close();
    }
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port: sys.app.httpPort, path: "/healthz", ca: readFileSync(caFile) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(status, 200);
    await assert.rejects(fetch(`http://127.0.0.1:${sys.app.httpPort}/healthz`));
  });
});
