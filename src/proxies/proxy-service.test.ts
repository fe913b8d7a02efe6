import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { startApp } from "../app.ts";
import { createToken } from "../auth/tokens.ts";
import { SERVICE_NAMES, loadConfig } from "../config/config.ts";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { Proxy, ProxySpec } from "../gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../server/clients.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { startEchoTarget, startHangingProxy, startHttpConnectProxy, startRefusingProxy, startSocks5Proxy } from "../../test/support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "../../test/support/local-proxies.ts";
import { rejectsWith } from "../../test/support/grpc.ts";


/** Polls `probe` until it returns a value other than undefined, failing after `ms`. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const UNKNOWN_ID = "0123456789abcdef01234567";
/** A target where nothing listens: port 1 is never handed out to the tests' ephemeral listeners. */
const CLOSED_TARGET = "127.0.0.1:1";
let logins = 0;

async function newAccount(sys: TestSystem): Promise<string> {
  return (await sys.accounts.createAccount({ platform: "vk", login: `proxy-user-${++logins}`, password: "pw" })).id;
}

/** Adds one proxy and returns its id; fails the test when the item is refused. */
async function addProxy(sys: TestSystem, url: string, spec: Partial<Omit<ProxySpec, "url" | "$typeName">> = {}): Promise<string> {
  const res = await sys.proxies.addProxies({ proxies: [{ url, ...spec }] });
  assert.equal(res.results[0].error, "", `adding ${url}`);
  return res.results[0].proxyId;
}

async function listAll(sys: TestSystem): Promise<Map<string, Proxy>> {
  const page = await sys.proxies.listProxies({ pageSize: 1000 });
  return new Map(page.proxies.map((p) => [p.id, p]));
}

async function pool(sys: TestSystem, id: string): Promise<Proxy> {
  const p = (await listAll(sys)).get(id);
  assert.ok(p, `proxy ${id} is listed`);
  return p;
}

const ms = (p: Proxy) => timestampDate(p.expiresAt!).getTime();

for (const kind of STORE_KINDS) {
  describe(`ProxyService on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    before(async () => {
      echo = await startEchoTarget();
      sys = await startTestSystem(kind, {
        backgroundChecks: false,
        env: {
          // The local proxies and targets are on loopback; CLOSED_TARGET is a second allowed check target.
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
          CONVEER_PROXY_CHECK_TARGETS: CLOSED_TARGET,
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
          CONVEER_PROXY_CHECK_TIMEOUT_MS: "500",
          CONVEER_PROXY_FAILURE_THRESHOLD: "3",
        },
      });
    });
    after(async () => {
      await sys.stop();
      await echo.close();
    });
    // Every test starts with an empty pool, so "the pool is full" means what the test set up.
    beforeEach(async () => {
      await sys.db.query("DELETE FROM proxy_allocations");
      await sys.db.query("DELETE FROM proxies");
    });

    test("AddProxies keeps the good items, reports each bad one, defaults capacity to 1, stores no plaintext password", async () => {
      const res = await sys.proxies.addProxies({
        proxies: [
          { url: "socks5://alice:s3cret-Proxy-Pw@203.0.113.5:1080", country: "ru", provider: " acme ", tags: [" mobile ", "ru", "mobile", ""] },
          { url: "ftp://203.0.113.6:21" },
          { url: "http://203.0.113.7:3128", country: "Russia" },
          { url: "http://bob:pw2@203.0.113.8:3128", country: "US", provider: "beta", capacity: 3 },
          { url: "http://203.0.113.9:3128", capacity: -1 },
          { url: "socks5://alice:other@203.0.113.5:1080" },
          { url: "https://[2001:db8::1]:8443" },
          // Control characters (a NUL the store cannot even hold) fail their item, not the whole call.
          { url: "http://203.0.113.10:3128", provider: "bad\u0001provider" },
          { url: "http://203.0.113.11:3128", tags: ["ok", "bell\u0007"] },
          { url: "socks5://a%00b:pw@203.0.113.12:1080" },
          // Credentials the dialer can never send are refused up front.
          { url: `socks5://${"u".repeat(256)}:pw@203.0.113.13:1080` },
          { url: "http://a%3Ab:pw@203.0.113.14:3128" },
        ],
      });
      assert.deepEqual([res.added, res.failed], [3, 9]);
      assert.deepEqual(
        res.results.map((r) => r.index),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
      );
      assert.match(res.results[7].error, /proxies\[7\]\.provider .*control characters/);
      assert.match(res.results[8].error, /proxies\[8\]\.tags\[1\] .*control characters/);
      assert.match(res.results[9].error, /proxies\[9\]\.url .*control characters/);
      assert.match(res.results[10].error, /proxies\[10\]\.url .*255 bytes/);
      assert.match(res.results[11].error, /proxies\[11\]\.url .*must not contain ":"/);
      assert.match(res.results[1].error, /proxies\[1\]\.url .*unsupported scheme "ftp"/);
      assert.match(res.results[2].error, /proxies\[2\]\.country .*alpha-2/);
      assert.match(res.results[4].error, /proxies\[4\]\.capacity/);
      assert.match(res.results[5].error, /proxies\[5\].*already in the pool/);
      for (const i of [1, 2, 4, 5, 7, 8, 9, 10, 11]) assert.equal(res.results[i].proxyId, "");
      for (const i of [0, 3, 6]) assert.match(res.results[i].proxyId, /^[0-9a-f]{24}$/);

      const listed = await listAll(sys);
      assert.equal(listed.size, 3);
      const a = listed.get(res.results[0].proxyId)!;
      assert.deepEqual(
        [a.protocol, a.host, a.port, a.username, a.password, a.country, a.provider, a.tags, a.capacity, a.allocated, a.healthy],
        ["socks5", "203.0.113.5", 1080, "alice", "", "RU", "acme", ["mobile", "ru"], 1, 0, true],
      );
      const b = listed.get(res.results[3].proxyId)!;
      assert.deepEqual([b.protocol, b.username, b.password, b.country, b.provider, b.capacity], ["http", "bob", "", "US", "beta", 3]);
      const c = listed.get(res.results[6].proxyId)!;
      assert.deepEqual([c.protocol, c.host, c.port, c.capacity], ["https", "2001:db8::1", 8443, 1]);

      for (const col of ["password_sealed", "host", "username", "provider", "last_error"]) {
        const r = await sys.db.query(`SELECT 1 FROM proxies WHERE ${col}::text LIKE '%s3cret-Proxy-Pw%'`);
        assert.equal(r.rowCount, 0, `plaintext password found in proxies.${col}`);
      }
      await rejectsWith(sys.proxies.addProxies({ proxies: [] }), Code.InvalidArgument, /proxies/);
    });

    test("ListProxies filters by country and provider, pages with a keyset token, counts, never returns passwords", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        ids.push(await addProxy(sys, `socks5://user${i}:pw-${i}@203.0.113.${10 + i}:1080`, { country: i < 4 ? "RU" : "US", provider: i % 2 ? "acme" : "beta" }));
      }
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = await sys.proxies.listProxies({ pageSize: 3, pageToken: token });
        assert.equal(page.totalCount, 7n);
        assert.ok(page.proxies.length <= 3);
        for (const p of page.proxies) assert.equal(p.password, "", "ListProxies must not return passwords");
        seen.push(...page.proxies.map((p) => p.id));
        token = page.nextPageToken;
        pages++;
      } while (token);
      assert.equal(pages, 3);
      assert.deepEqual([...seen].sort(), [...ids].sort());

      const ru = await sys.proxies.listProxies({ country: "ru" });
      assert.equal(ru.totalCount, 4n);
      assert.ok(ru.proxies.every((p) => p.country === "RU"));
      const usAcme = await sys.proxies.listProxies({ country: "US", provider: "acme" });
      assert.deepEqual(usAcme.proxies.map((p) => p.id).sort(), [ids[5]].sort());
      assert.equal(usAcme.totalCount, 1n);
      const beta = await sys.proxies.listProxies({ provider: "beta" });
      assert.equal(beta.totalCount, 4n);

      const first = await sys.proxies.listProxies({ country: "RU", pageSize: 1 });
      await rejectsWith(sys.proxies.listProxies({ country: "US", pageToken: first.nextPageToken }), Code.InvalidArgument, /page_token/);
      await rejectsWith(sys.proxies.listProxies({ pageToken: "garbage" }), Code.InvalidArgument, /page_token/);
      await rejectsWith(sys.proxies.listProxies({ pageSize: 5000 }), Code.InvalidArgument, /page_size/);
      await rejectsWith(sys.proxies.listProxies({ country: "Russia" }), Code.InvalidArgument, /country .*alpha-2/);
      await rejectsWith(sys.proxies.listProxies({ provider: "a\u0000" }), Code.InvalidArgument, /provider/);
    });

    test("AllocateProxy is sticky and idempotent per account and renews the lease", async () => {
      const p1 = await addProxy(sys, "socks5://u1:pw-one@203.0.113.21:1080", { capacity: 5 });
      await addProxy(sys, "socks5://u2:pw-two@203.0.113.22:1080", { capacity: 5 });
      const acc = await newAccount(sys);
      const first = await sys.proxies.allocateProxy({ accountId: acc, platform: "vk" });
      assert.ok(first.expiresAt, "expires_at is set");
      assert.ok(ms(first) > Date.now() + 3_600_000, "the lease runs for the configured time");
      assert.equal(first.allocationNote, "");
      // The holder gets the credentials it needs to use the proxy.
      assert.equal(first.password, first.id === p1 ? "pw-one" : "pw-two");
      await new Promise((r) => setTimeout(r, 20));
      const again = await sys.proxies.allocateProxy({ accountId: acc, platform: "vk" });
      assert.equal(again.id, first.id, "same proxy again");
      assert.ok(ms(again) > ms(first), `lease renewed: ${ms(again)} > ${ms(first)}`);
      const held = await sys.proxies.getProxyForAccount({ accountId: acc });
      assert.equal(held.id, first.id);
      assert.equal(ms(held), ms(again));
      assert.equal(held.password, again.password);
      // Allocating twice took one slot, not two.
      const total = [...(await listAll(sys)).values()].reduce((n, p) => n + p.allocated, 0);
      assert.equal(total, 1);
      // Concurrent first allocations for one account agree on one proxy.
      const acc2 = await newAccount(sys);
      const racing = await Promise.all(Array.from({ length: 8 }, () => sys.proxies.allocateProxy({ accountId: acc2 })));
      assert.equal(new Set(racing.map((p) => p.id)).size, 1);
      const total2 = [...(await listAll(sys)).values()].reduce((n, p) => n + p.allocated, 0);
      assert.equal(total2, 2);
    });

    test("AllocateProxy honours preferred country and provider, and falls back with a note", async () => {
      const ruAcme = await addProxy(sys, "http://203.0.113.31:3128", { country: "RU", provider: "acme", capacity: 2 });
      const usBeta = await addProxy(sys, "http://203.0.113.32:3128", { country: "US", provider: "beta", capacity: 2 });

      const us = await sys.proxies.allocateProxy({ accountId: await newAccount(sys), preferredCountry: "us" });
      assert.deepEqual([us.id, us.allocationNote], [usBeta, ""]);
      const acme = await sys.proxies.allocateProxy({ accountId: await newAccount(sys), preferredProvider: " acme " });
      assert.deepEqual([acme.id, acme.allocationNote], [ruAcme, ""]);
      const both = await sys.proxies.allocateProxy({ accountId: await newAccount(sys), preferredCountry: "RU", preferredProvider: "acme" });
      assert.deepEqual([both.id, both.allocationNote], [ruAcme, ""]);

      // RU/acme is full now: a RU request falls back to the only healthy proxy left, and says so.
      const fallback = await sys.proxies.allocateProxy({ accountId: await newAccount(sys), preferredCountry: "RU" });
      assert.equal(fallback.id, usBeta);
      assert.match(fallback.allocationNote, /^no free healthy proxy matched preferred country RU;/);
      assert.match(fallback.allocationNote, new RegExp(`allocated ${usBeta} \\(country US, provider beta\\)`));
      const none = await addProxy(sys, "http://203.0.113.33:3128", { country: "DE", provider: "gamma" });
      const miss = await sys.proxies.allocateProxy({ accountId: await newAccount(sys), preferredCountry: "FR", preferredProvider: "delta" });
      assert.equal(miss.id, none);
      assert.match(miss.allocationNote, /country FR and provider delta/);
    });

    test("AllocateProxy never goes over capacity; RESOURCE_EXHAUSTED when nothing is free", async () => {
      const p = await addProxy(sys, "socks5://203.0.113.41:1080", { capacity: 2 });
      const a1 = await newAccount(sys);
      const a2 = await newAccount(sys);
      assert.equal((await sys.proxies.allocateProxy({ accountId: a1 })).id, p);
      assert.equal((await sys.proxies.allocateProxy({ accountId: a2 })).id, p);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: await newAccount(sys) }), Code.ResourceExhausted, /no free healthy proxy/);
      assert.deepEqual([(await pool(sys, p)).allocated, (await pool(sys, p)).capacity], [2, 2]);
    });

    test("concurrent AllocateProxy calls fill the pool exactly to capacity, no more and no less", async () => {
      const p = await addProxy(sys, "socks5://203.0.113.42:1080", { capacity: 5 });
      const accs = await Promise.all(Array.from({ length: 12 }, () => newAccount(sys)));
      const out = await Promise.allSettled(accs.map((accountId) => sys.proxies.allocateProxy({ accountId })));
      const won = out.filter((o) => o.status === "fulfilled");
      assert.equal(won.length, 5, "exactly capacity accounts get the proxy, even when they ask at once");
      for (const o of won) assert.equal(o.value.id, p);
      for (const o of out) {
        if (o.status === "rejected") {
          assert.ok(o.reason instanceof ConnectError);
          assert.equal(Code[o.reason.code], Code[Code.ResourceExhausted], o.reason.rawMessage);
          assert.match(o.reason.rawMessage, /no free healthy proxy/);
        }
      }
      const listed = await pool(sys, p);
      assert.deepEqual([listed.allocated, listed.capacity], [5, 5]);
      const holders = await sys.db.query("SELECT account_id FROM proxy_allocations WHERE proxy_id = $1", [p]);
      assert.equal(holders.rowCount, 5);
    });

    test("AllocateProxy: NOT_FOUND for unknown accounts, INVALID_ARGUMENT naming the field, no proxy for banned accounts", async () => {
      await addProxy(sys, "http://203.0.113.51:3128", { capacity: 10 });
      await rejectsWith(sys.proxies.allocateProxy({ accountId: UNKNOWN_ID }), Code.NotFound, new RegExp(UNKNOWN_ID));
      await rejectsWith(sys.proxies.allocateProxy({ accountId: "" }), Code.InvalidArgument, /account_id/);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: "not-an-id" }), Code.InvalidArgument, /account_id/);
      const acc = await newAccount(sys);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: acc, preferredCountry: "Russia" }), Code.InvalidArgument, /preferred_country/);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: acc, platform: "x".repeat(33) }), Code.InvalidArgument, /platform/);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: acc, platform: "v\u0000k" }), Code.InvalidArgument, /platform/);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: acc, preferredProvider: "a\u0000" }), Code.InvalidArgument, /preferred_provider/);
      await rejectsWith(sys.proxies.getProxyForAccount({ accountId: "nope" }), Code.InvalidArgument, /account_id/);
      await rejectsWith(sys.proxies.releaseProxy({ accountId: acc, proxyId: "nope" }), Code.InvalidArgument, /proxy_id/);
      await rejectsWith(sys.proxies.forceRotate({ accountId: "" }), Code.InvalidArgument, /account_id/);
      await rejectsWith(sys.proxies.checkHealth({ proxyId: "" }), Code.InvalidArgument, /proxy_id/);
      await rejectsWith(sys.proxies.removeProxy({ proxyId: "zz" }), Code.InvalidArgument, /proxy_id/);
      // Nothing was allocated by the refused calls.
      await rejectsWith(sys.proxies.getProxyForAccount({ accountId: acc }), Code.NotFound);

      const banned = await newAccount(sys);
      await sys.accounts.updateStatus({ accountId: banned, status: AccountStatus.BANNED, reason: "test" });
      await rejectsWith(sys.proxies.allocateProxy({ accountId: banned }), Code.FailedPrecondition, /BANNED/);
    });

    test("GetProxyForAccount is NOT_FOUND without an allocation; ReleaseProxy frees the slot and is idempotent", async () => {
      const p = await addProxy(sys, "socks5://u:pw@203.0.113.61:1080");
      const a = await newAccount(sys);
      const b = await newAccount(sys);
      await rejectsWith(sys.proxies.getProxyForAccount({ accountId: a }), Code.NotFound, /AllocateProxy/);
      assert.equal((await sys.proxies.allocateProxy({ accountId: a })).id, p);
      await rejectsWith(sys.proxies.allocateProxy({ accountId: b }), Code.ResourceExhausted);

      // A release naming another proxy leaves the allocation alone.
      const wrong = await sys.proxies.releaseProxy({ accountId: a, proxyId: UNKNOWN_ID });
      assert.deepEqual([wrong.success, wrong.proxyId], [false, ""]);
      assert.equal((await sys.proxies.getProxyForAccount({ accountId: a })).id, p);

      const rel = await sys.proxies.releaseProxy({ accountId: a, proxyId: p });
      assert.deepEqual([rel.success, rel.proxyId], [true, p]);
      assert.equal((await pool(sys, p)).allocated, 0);
      const again = await sys.proxies.releaseProxy({ accountId: a });
      assert.deepEqual([again.success, again.proxyId], [false, ""]);
      assert.equal((await pool(sys, p)).allocated, 0, "a second release does not free a slot twice");
      await rejectsWith(sys.proxies.getProxyForAccount({ accountId: a }), Code.NotFound);
      // The freed slot is usable.
      assert.equal((await sys.proxies.allocateProxy({ accountId: b })).id, p);
      assert.equal((await pool(sys, p)).allocated, 1);
    });

    test("ForceRotate never returns the same proxy; RESOURCE_EXHAUSTED when there is no other", async () => {
      const x = await addProxy(sys, "socks5://u:px@203.0.113.71:1080");
      const y = await addProxy(sys, "socks5://u:py@203.0.113.72:1080");
      const acc = await newAccount(sys);
      await rejectsWith(sys.proxies.forceRotate({ accountId: acc, reason: "test" }), Code.NotFound);
      const first = await sys.proxies.allocateProxy({ accountId: acc });
      const other = first.id === x ? y : x;
      const rotated = await sys.proxies.forceRotate({ accountId: acc, reason: "banned on site" });
      assert.equal(rotated.id, other);
      assert.equal(rotated.password, other === x ? "px" : "py");
      assert.ok(rotated.expiresAt);
      assert.equal((await sys.proxies.getProxyForAccount({ accountId: acc })).id, other);
      let listed = await listAll(sys);
      assert.deepEqual([listed.get(first.id)!.allocated, listed.get(other)!.allocated], [0, 1]);
      const back = await sys.proxies.forceRotate({ accountId: acc });
      assert.equal(back.id, first.id);

      // The only other proxy is taken: no rotation, and the account keeps what it has.
      const acc2 = await newAccount(sys);
      assert.equal((await sys.proxies.allocateProxy({ accountId: acc2 })).id, other);
      await rejectsWith(sys.proxies.forceRotate({ accountId: acc }), Code.ResourceExhausted, /no other free healthy proxy/);
      assert.equal((await sys.proxies.getProxyForAccount({ accountId: acc })).id, first.id);
      listed = await listAll(sys);
      assert.deepEqual([listed.get(x)!.allocated, listed.get(y)!.allocated], [1, 1]);
    });

    test("RemoveProxy moves its accounts to other proxies, releases those that do not fit", async () => {
      const doomed = await addProxy(sys, "http://203.0.113.81:3128", { capacity: 3, country: "RU" });
      const accs = [await newAccount(sys), await newAccount(sys), await newAccount(sys)];
      for (const accountId of accs) assert.equal((await sys.proxies.allocateProxy({ accountId })).id, doomed);
      const other = await addProxy(sys, "http://203.0.113.82:3128", { capacity: 1, country: "US" });
      const spare = await addProxy(sys, "http://203.0.113.83:3128", { capacity: 1, country: "RU" });

      const res = await sys.proxies.removeProxy({ proxyId: doomed });
      assert.deepEqual([res.success, res.accountsMoved, res.accountsReleased], [true, 2, 1]);
      const now = await Promise.all(accs.map((accountId) => sys.proxies.getProxyForAccount({ accountId }).then((p) => p.id, () => "")));
      assert.deepEqual([...now].sort(), ["", other, spare].sort());
      const listed = await listAll(sys);
      assert.deepEqual([...listed.keys()].sort(), [other, spare].sort());
      assert.deepEqual([listed.get(other)!.allocated, listed.get(spare)!.allocated], [1, 1]);
      await rejectsWith(sys.proxies.removeProxy({ proxyId: doomed }), Code.NotFound);
      await rejectsWith(sys.proxies.checkHealth({ proxyId: doomed }), Code.NotFound);
    });

    describe("CheckHealth really connects through the proxy", () => {
      const proxies: Record<string, LocalProxy> = {};
      before(async () => {
        proxies.http = await startHttpConnectProxy({ username: "hu", password: "h p@ss:1" });
        proxies.socks = await startSocks5Proxy({ username: "su", password: "s-pass" });
        proxies.hanging = await startHangingProxy();
        proxies.httpBadAuth = await startHttpConnectProxy({ username: "hu", password: "right" });
        proxies.socksBadAuth = await startSocks5Proxy({ username: "su", password: "right" });
        // Last: its port is free again, and a listener started after it could be given the same one.
        proxies.refusing = await startRefusingProxy({ scheme: "socks5" });
      });
      after(async () => {
        for (const p of Object.values(proxies)) await p.close();
      });

      test("a good HTTP CONNECT proxy with credentials", async () => {
        const id = await addProxy(sys, proxies.http.url);
        const before = proxies.http.connections;
        const h = await sys.proxies.checkHealth({ proxyId: id });
        assert.equal(h.error, "");
        assert.deepEqual([h.proxyId, h.healthy, h.target, h.consecutiveFailures], [id, true, `${echo.host}:${echo.port}`, 0]);
        assert.ok(h.latencyMs >= 0n && h.latencyMs < 2000n, `latency ${h.latencyMs}`);
        assert.ok(h.checkedAt && Math.abs(timestampDate(h.checkedAt).getTime() - Date.now()) < 10_000);
        assert.ok(proxies.http.connections > before, "a real tunnel was opened through the proxy");
      });

      test("a good SOCKS5 proxy with credentials, to an explicit target", async () => {
        const id = await addProxy(sys, proxies.socks.url);
        const before = proxies.socks.connections;
        const h = await sys.proxies.checkHealth({ proxyId: id, target: `${echo.host}:${echo.port}` });
        assert.deepEqual([h.healthy, h.error, h.consecutiveFailures], [true, "", 0]);
        assert.ok(proxies.socks.connections > before, "a real tunnel was opened through the proxy");
        // The target field is honoured: through the same good proxy, a closed target port fails.
        const bad = await sys.proxies.checkHealth({ proxyId: id, target: CLOSED_TARGET });
        assert.equal(bad.healthy, false);
        assert.equal(bad.target, CLOSED_TARGET);
        assert.match(bad.error, /could not reach target 127\.0\.0\.1:1 /);
        await rejectsWith(sys.proxies.checkHealth({ proxyId: id, target: "no-port" }), Code.InvalidArgument, /target/);
        await rejectsWith(sys.proxies.checkHealth({ proxyId: id, target: "host:70000" }), Code.InvalidArgument, /target/);
        await rejectsWith(sys.proxies.checkHealth({ proxyId: id, target: "bad\u0000host:80" }), Code.InvalidArgument, /target/);
        await rejectsWith(sys.proxies.checkHealth({ proxyId: UNKNOWN_ID, target: "no-port" }), Code.InvalidArgument, /target/);
        // A malformed target is the caller's mistake: it does not count against the proxy.
        assert.equal((await pool(sys, id)).consecutiveFailures, 1);
        await rejectsWith(sys.proxies.checkHealth({ proxyId: UNKNOWN_ID }), Code.NotFound);
      });

      test("a proxy that refuses connections", async () => {
        const id = await addProxy(sys, proxies.refusing.url);
        const h = await sys.proxies.checkHealth({ proxyId: id });
        assert.equal(h.healthy, false);
        assert.match(h.error, /refused the connection/);
        assert.ok(h.consecutiveFailures >= 1);
        const listed = await pool(sys, id);
        assert.equal(listed.consecutiveFailures, h.consecutiveFailures);
      });

      test("a proxy that accepts and never answers times out after CONVEER_PROXY_CHECK_TIMEOUT_MS", async () => {
        const id = await addProxy(sys, proxies.hanging.url);
        const started = Date.now();
        const h = await sys.proxies.checkHealth({ proxyId: id });
        const took = Date.now() - started;
        assert.equal(h.healthy, false);
        assert.match(h.error, /did not answer within 500 ms/);
        assert.ok(h.latencyMs >= 450n && h.latencyMs < 2000n, `latency ${h.latencyMs}`);
        assert.ok(took < 3000, `the call took ${took} ms`);
        assert.ok(proxies.hanging.connections >= 1, "the check did connect to the hanging proxy");
      });

      test("wrong credentials are reported for HTTP CONNECT and SOCKS5", async () => {
        const httpId = await addProxy(sys, proxies.httpBadAuth.url.replace("right", "wrong"));
        const socksId = await addProxy(sys, proxies.socksBadAuth.url.replace("right", "wrong"));
        const h1 = await sys.proxies.checkHealth({ proxyId: httpId });
        assert.equal(h1.healthy, false);
        assert.match(h1.error, /rejected the credentials \(HTTP 407\)/);
        const h2 = await sys.proxies.checkHealth({ proxyId: socksId });
        assert.equal(h2.healthy, false);
        assert.match(h2.error, /rejected the credentials \(SOCKS5/);
        assert.equal(proxies.httpBadAuth.connections + proxies.socksBadAuth.connections, 0, "no tunnel without the right credentials");
      });

      test("failing the threshold takes the proxy out of rotation and moves its accounts; a success brings it back", async () => {
        const failing = await addProxy(sys, proxies.http.url);
        const acc = await newAccount(sys);
        assert.equal((await sys.proxies.allocateProxy({ accountId: acc })).id, failing);
        const healthy = await addProxy(sys, proxies.socks.url);
        const target = CLOSED_TARGET;
        let h = await sys.proxies.checkHealth({ proxyId: failing, target });
        assert.equal(h.consecutiveFailures, 1);
        assert.equal((await pool(sys, failing)).healthy, true, "one failure does not leave rotation");
        h = await sys.proxies.checkHealth({ proxyId: failing, target });
        h = await sys.proxies.checkHealth({ proxyId: failing, target });
        assert.equal(h.consecutiveFailures, 3);
        const out = await pool(sys, failing);
        assert.deepEqual([out.healthy, out.consecutiveFailures, out.allocated], [false, 3, 0]);
        assert.equal((await sys.proxies.getProxyForAccount({ accountId: acc })).id, healthy);
        // Out of rotation: nobody gets it.
        await rejectsWith(sys.proxies.allocateProxy({ accountId: await newAccount(sys) }), Code.ResourceExhausted);

        const ok = await sys.proxies.checkHealth({ proxyId: failing });
        assert.deepEqual([ok.healthy, ok.consecutiveFailures], [true, 0]);
        assert.equal((await pool(sys, failing)).healthy, true);
        assert.equal((await sys.proxies.allocateProxy({ accountId: await newAccount(sys) })).id, failing);
      });
    });
  });

  describe(`ProxyService background checker on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    let good: LocalProxy;
    let doomed: LocalProxy;
    before(async () => {
      echo = await startEchoTarget();
      good = await startHttpConnectProxy({ username: "g", password: "good-pw" });
      doomed = await startSocks5Proxy({ username: "d", password: "doomed-pw" });
      sys = await startTestSystem(kind, {
        env: {
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
          CONVEER_PROXY_CHECK_INTERVAL_MS: "200",
          CONVEER_PROXY_CHECK_TIMEOUT_MS: "500",
          CONVEER_PROXY_FAILURE_THRESHOLD: "2",
        },
      });
    });
    after(async () => {
      await sys.stop();
      await good.close();
      await doomed.close();
      await echo.close();
    });

    test("a proxy failing N checks in a row leaves rotation and its accounts move to a healthy proxy", async () => {
      const doomedId = await addProxy(sys, doomed.url, { capacity: 2, country: "RU" });
      const accs = [await newAccount(sys), await newAccount(sys)];
      for (const accountId of accs) assert.equal((await sys.proxies.allocateProxy({ accountId })).id, doomedId);
      const goodId = await addProxy(sys, good.url, { capacity: 5, country: "US" });

      // The checker really tunnels through both while they work.
      await eventually("background checks through both proxies", async () => (good.connections > 0 && doomed.connections > 0 ? true : undefined));
      const listed = await listAll(sys);
      assert.deepEqual([listed.get(doomedId)!.healthy, listed.get(goodId)!.healthy], [true, true]);

      await doomed.close();
      const out = await eventually("the dead proxy to leave rotation", async () => {
        const p = await pool(sys, doomedId);
        return p.healthy ? undefined : p;
      });
      assert.ok(out.consecutiveFailures >= 2, `failures ${out.consecutiveFailures}`);
      for (const accountId of accs) {
        await eventually(`account ${accountId} to move`, async () => {
          const p = await sys.proxies.getProxyForAccount({ accountId });
          return p.id === goodId ? p : undefined;
        });
      }
      const after = await listAll(sys);
      assert.deepEqual([after.get(doomedId)!.allocated, after.get(goodId)!.allocated, after.get(goodId)!.healthy], [0, 2, true]);
      assert.equal(after.get(goodId)!.consecutiveFailures, 0);
    });

    test("with AccountService in another process, AllocateProxy still answers NOT_FOUND for unknown accounts", async (t) => {
      // A proxy-only process on its own store, reaching this system's AccountService over gRPC.
      const store = await freshStore(kind);
      const dataDir = await mkdtemp(join(tmpdir(), "conveer-test-"));
      const env: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "22".repeat(32), CONVEER_PROXY_CHECK_INTERVAL_MS: "86400000" };
      for (const name of SERVICE_NAMES) env[`${name.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
      env.ACCOUNT_SERVICE_GRPC_ADDR = sys.addr("account");
      const app = await startApp({ config: loadConfig(env), services: ["proxy"], db: store.db, log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }) });
      const sessions: Http2SessionManager[] = [];
      t.after(async () => {
        for (const s of sessions) s.abort();
        await app.stop(500);
        await store.drop();
        await rm(dataDir, { recursive: true, force: true });
      });
      const remote = remoteClient(ProxyService, { addr: `127.0.0.1:${app.ports.proxy}`, sessions });
      const id = (await remote.addProxies({ proxies: [{ url: "http://203.0.113.91:3128" }] })).results[0].proxyId;
      assert.equal((await remote.allocateProxy({ accountId: await newAccount(sys) })).id, id);
      await rejectsWith(remote.allocateProxy({ accountId: UNKNOWN_ID }), Code.NotFound, new RegExp(UNKNOWN_ID));
    });

    // Last in this suite: once a token exists, open mode ends.
    test("CheckHealth changes the pool (failures take a proxy out of rotation), so a read-only token may not call it", async () => {
      const id = [...(await listAll(sys)).values()].find((p) => p.port === good.port)!.id;
      const reader = sys.as(await createToken(sys.db, "0123456789abcdef0000aaaa", "proxy-reader", ["proxies:read"])).proxies;
      const writer = sys.as(await createToken(sys.db, "0123456789abcdef0000bbbb", "proxy-writer", ["proxies:write"])).proxies;
      assert.ok((await reader.listProxies({})).totalCount >= 1n);
      await rejectsWith(reader.checkHealth({ proxyId: id, target: CLOSED_TARGET }), Code.PermissionDenied, /proxies:write/);
      assert.equal((await writer.checkHealth({ proxyId: id })).healthy, true);
    });
  });
}
