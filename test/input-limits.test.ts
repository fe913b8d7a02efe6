/**
 * Bad input gets a clear error at any size, over real gRPC (a grpc-js client, as the issue saw it):
 * a 1 MB string in any string field of any method answers INVALID_ARGUMENT naming the field with a
 * short message (it used to answer INTERNAL "Received RST_STREAM … Protocol error" once the echoed
 * value passed ~64 KB), and out-of-range Timestamps answer INVALID_ARGUMENT instead of reaching SQL.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { ScalarType, create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { MailService } from "../src/gen/conveer/v1/mail_pb.js";
import { MaxService } from "../src/gen/conveer/v1/max_pb.js";
import { TelegramService } from "../src/gen/conveer/v1/telegram_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import type { ServiceName } from "../src/config/config.ts";
import { MAX_STRING_CHARS, STRING_LIMITS } from "../src/server/request-check.ts";
import { codeName, rawClient, rawServerStream, rawUnary } from "./support/grpc.ts";
import type { RawResult } from "./support/grpc.ts";
import { STORE_KINDS } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { grpcPortServices } from "./support/services.ts";

const MB = 1024 * 1024;
/** The longest status message a test accepts: a field path, a rule and a short quote. */
const SHORT = 300;


const portOf = (d: DescService) => d.typeName.replace(/^conveer\./, "").replace(/Service$/, "").toLowerCase() as ServiceName;

/** One request with one oversized string: where it is (the path a message names), its limit, the request. */
type Case = { path: string; limit: number; init: Record<string, unknown> };

/** A case per string place in `desc` (fields, list items, map keys and values, nested messages), each holding `big`. */
function oversizedCases(desc: DescMessage, big: string, prefix = "", depth = 0): Case[] {
  const out: Case[] = [];
  for (const f of desc.fields) {
    const limit = STRING_LIMITS[`${desc.typeName}.${f.name}`] ?? MAX_STRING_CHARS;
    const path = `${prefix}${f.name}`;
    const set = (v: unknown) => (f.oneof ? { [f.oneof.localName]: { case: f.localName, value: v } } : { [f.localName]: v });
    const nested = (wrap: (v: unknown) => unknown, at: string) =>
      depth < 3 ? oversizedCases(f.message!, big, `${at}.`, depth + 1).map((c) => ({ ...c, init: set(wrap(create(f.message!, c.init as never))) })) : [];
    switch (f.fieldKind) {
      case "scalar":
        if (f.scalar === ScalarType.STRING) out.push({ path, limit, init: set(big) });
        break;
      case "message":
        out.push(...nested((v) => v, path));
        break;
      case "list":
        if (f.listKind === "scalar" && f.scalar === ScalarType.STRING) out.push({ path: `${path}[0]`, limit, init: set([big]) });
        if (f.listKind === "message") out.push(...nested((v) => [v], `${path}[0]`));
        break;
      case "map":
        // Every request map is map<string, string>.
        assert.ok(f.mapKey === ScalarType.STRING && f.mapKind === "scalar" && f.scalar === ScalarType.STRING, `${desc.typeName}.${f.name} is a map<string, string>`);
        out.push({ path: `${path} (a key)`, limit: MAX_STRING_CHARS, init: set({ [big]: "v" }) });
        out.push({ path: `${path}["k"]`, limit, init: set({ k: big }) });
        break;
    }
  }
  return out;
}

function call(c: grpc.Client, service: DescService, m: DescMethod, init: Record<string, unknown>): Promise<RawResult> {
  const path = `/${service.typeName}/${m.name}`;
  const body = Buffer.from(toBinary(m.input, create(m.input, init as never)));
  return m.methodKind === "server_streaming" ? rawServerStream(c, path, body, { deadlineMs: 10_000 }) : rawUnary(c, path, body, { deadlineMs: 10_000 });
}

function assertRefused(r: RawResult, field: string, what: string): void {
  assert.equal(codeName(r.code), "INVALID_ARGUMENT", `${what}: ${r.details.slice(0, 200)}`);
  assert.ok(r.details.startsWith(field), `${what}: the message names ${field}: ${r.details.slice(0, 200)}`);
  assert.ok(r.details.length <= SHORT, `${what}: the message is short (${r.details.length} characters): ${r.details.slice(0, 200)}…`);
}

for (const kind of STORE_KINDS) {
  describe(`input limits over gRPC on ${kind}`, () => {
    let sys: TestSystem;
    let accountId: string;
    const clients = new Map<string, grpc.Client>();
    const client = (d: DescService) => {
      let c = clients.get(d.typeName);
      if (!c) clients.set(d.typeName, (c = rawClient(sys.addr(portOf(d)))));
      return c;
    };

    before(async () => {
      sys = await startTestSystem(kind);
      accountId = (await sys.accounts.createAccount({ platform: "vk", login: "limits", password: "pw" })).id;
    });
    after(async () => {
      for (const c of clients.values()) c.close();
      await sys.stop();
    });

    test("a 1 MB value where the issue saw RST_STREAM answers INVALID_ARGUMENT naming the field, in a short message", async () => {
      const big = "x".repeat(MB);
      const cases: [DescService, string, Record<string, unknown>, string][] = [
        [AccountService, "ListAccounts", { platform: big }, "platform"],
        [AccountService, "CreateAccount", { platform: "vk", login: "big-phone", password: "pw", phone: big }, "phone"],
        [AccountService, "CreateAccount", { platform: big, login: "big-platform", password: "pw" }, "platform"],
        [AccountService, "UpdateCredentials", { accountId, phone: big }, "phone"],
        [WarmingService, "StartWarming", { accountId, scenarioId: big }, "scenario_id"],
        [WarmingService, "GetStatistics", { platform: big }, "platform"],
        [WarmingService, "StreamEvents", { eventTypes: [big] }, "event_types[0]"],
        [WarmingService, "GetScenario", { scenarioId: big }, "scenario_id"],
        ...[VKService, TelegramService, MailService, MaxService].flatMap((s): [DescService, string, Record<string, unknown>, string][] => [
          [s, "Register", { country: big }, "country"],
          [s, "Register", { login: big }, "login"],
          [s, "Register", { proxyCountry: big }, "proxy_country"],
        ]),
      ];
      for (const [service, name, init, field] of cases) {
        const m = service.methods.find((x) => x.name === name)!;
        assertRefused(await call(client(service), service, m, init), field, `${service.typeName}.${name} ${field}`);
      }
    });

    test("every string of every method's request (fields, list items, map keys and values, nested) has a maximum, checked first", async () => {
      const big = "y".repeat(MB);
      let n = 0;
      for (const service of await grpcPortServices()) {
        for (const m of service.methods) {
          const cases = oversizedCases(m.input, big);
          const results = await Promise.all(cases.map((c) => call(client(service), service, m, c.init)));
          results.forEach((r, i) => {
            const c = cases[i];
            assertRefused(r, c.path, `${service.typeName}.${m.name} ${c.path}`);
            assert.match(r.details, new RegExp(`^${c.path.replace(/[[\]().]/g, "\\$&")} must be at most ${c.limit} characters, got ${MB}$`));
          });
          n += cases.length;
        }
      }
      assert.ok(n >= 80, `covered ${n} string places`);
      // The server is fine afterwards.
      assert.equal((await sys.accounts.getAccount({ accountId })).login, "limits");
    });

    test("a value at a field's limit passes the check (the domain may still refuse it, saying why, briefly)", async () => {
      const m = AccountService.methods.find((x) => x.name === "ListAccounts")!;
      const r = await call(client(AccountService), AccountService, m, { platform: "z".repeat(MAX_STRING_CHARS) });
      assertRefused(r, "platform", "ListAccounts platform at the limit");
      assert.match(r.details, /^platform must be empty or one of .*, got "z{64}"… \(1024 chars\)$/);
      const ok = await call(client(AccountService), AccountService, AccountService.methods.find((x) => x.name === "UpdateCredentials")!, {
        accountId,
        additional: { cookies: "c".repeat(STRING_LIMITS["conveer.UpdateCredentialsRequest.additional"]) },
      });
      assert.equal(codeName(ok.code), "OK", ok.details);
    });

    test("Timestamps outside 0001-9999 answer INVALID_ARGUMENT naming the field, never INTERNAL; the range's ends are accepted", async () => {
      const m = WarmingService.methods.find((x) => x.name === "GetStatistics")!;
      const c = client(WarmingService);
      assertRefused(await call(c, WarmingService, m, { from: { seconds: 9_223_372_036_854_775_807n } }), "from.seconds", "from = 2^63-1");
      assertRefused(await call(c, WarmingService, m, { to: { seconds: -9_223_372_036_854_775_808n } }), "to.seconds", "to = -2^63");
      assertRefused(await call(c, WarmingService, m, { to: { seconds: 253_402_300_800n } }), "to.seconds", "to = 10000-01-01");
      assertRefused(await call(c, WarmingService, m, { from: { seconds: 0n, nanos: -1 } }), "from.nanos", "nanos -1");
      assertRefused(await call(c, WarmingService, m, { from: { seconds: 0n, nanos: 1_000_000_000 } }), "from.nanos", "nanos 1e9");
      const ends = await call(c, WarmingService, m, { from: { seconds: -62_135_596_800n }, to: { seconds: 253_402_300_799n, nanos: 999_999_999 } });
      assert.equal(codeName(ends.code), "OK", ends.details);
    });
  });
}
