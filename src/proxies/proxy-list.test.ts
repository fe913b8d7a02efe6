import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ProxyAllocationFilter, ProxyHealthFilter } from "../gen/conveer/v1/proxy_pb.js";
import type { ListProxiesRequest } from "../gen/conveer/v1/proxy_pb.js";
import { STORE_KINDS } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { rejectsWith } from "../../test/support/grpc.ts";

/** A target where nothing listens: port 1 is never handed out to the tests' ephemeral listeners. */
const CLOSED_TARGET = "127.0.0.1:1";

for (const kind of STORE_KINDS) {
  describe(`ListProxies filters on ${kind}`, () => {
    let sys: TestSystem;
    const ids: Record<string, string> = {};
    const accounts: string[] = [];

    before(async () => {
      sys = await startTestSystem(kind, {
        backgroundChecks: false,
        env: { CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_TARGETS: CLOSED_TARGET, CONVEER_PROXY_CHECK_TIMEOUT_MS: "500", CONVEER_PROXY_FAILURE_THRESHOLD: "1" },
      });
      // Nothing listens on these ports: the pool never dials them except for the one CheckHealth below.
      const specs = [
        { name: "a", url: "http://127.0.0.1:9", provider: "pa", tags: ["mobile", "ru"], capacity: 3 },
        { name: "b", url: "http://127.0.0.1:10", provider: "pb", tags: ["mobile"], capacity: 1 },
        { name: "c", url: "socks5://127.0.0.1:11", provider: "pc", tags: ["dc"], capacity: 2 },
        { name: "d", url: "http://user:hunter2-secret@127.0.0.1:12", provider: "pd", tags: ["dc", "ru"], capacity: 1 },
      ];
      const res = await sys.proxies.addProxies({ proxies: specs });
      res.results.forEach((r, i) => {
        assert.equal(r.error, "");
        ids[specs[i].name] = r.proxyId;
      });
      for (let i = 0; i < 3; i++) accounts.push((await sys.accounts.createAccount({ platform: "vk", login: `pl-${i}`, password: "pw" })).id);
      // a holds two accounts, d one; b and c are free.
      assert.equal((await sys.proxies.allocateProxy({ accountId: accounts[0], preferredProvider: "pa" })).id, ids.a);
      assert.equal((await sys.proxies.allocateProxy({ accountId: accounts[1], preferredProvider: "pa" })).id, ids.a);
      assert.equal((await sys.proxies.allocateProxy({ accountId: accounts[2], preferredProvider: "pd" })).id, ids.d);
      // c fails its one check (threshold 1) and leaves rotation.
      const health = await sys.proxies.checkHealth({ proxyId: ids.c, target: CLOSED_TARGET });
      assert.equal(health.healthy, false);
    });
    after(() => sys.stop());

    /** Every page of a listing at page size 1, checking total_count on each; the names listed, in order. */
    async function names(req: Omit<Partial<ListProxiesRequest>, "$typeName">): Promise<string[]> {
      const byId = new Map(Object.entries(ids).map(([n, id]) => [id, n]));
      const out: string[] = [];
      let token = "";
      let total: bigint | undefined;
      do {
        const page = await sys.proxies.listProxies({ ...req, pageSize: 1, pageToken: token });
        if (total !== undefined) assert.equal(page.totalCount, total);
        total = page.totalCount;
        for (const p of page.proxies) {
          assert.equal(p.password, "", "never the password");
          out.push(byId.get(p.id)!);
        }
        token = page.nextPageToken;
      } while (token);
      assert.equal(BigInt(out.length), total);
      return out;
    }

    test("each proxy shows the accounts it holds, never the password", async () => {
      const page = await sys.proxies.listProxies({});
      const by = new Map(page.proxies.map((p) => [p.id, p]));
      assert.deepEqual(by.get(ids.a)?.accountIds, [accounts[0], accounts[1]].sort());
      assert.deepEqual(by.get(ids.d)?.accountIds, [accounts[2]]);
      assert.deepEqual(by.get(ids.b)?.accountIds, []);
      assert.equal(by.get(ids.d)?.username, "user");
      assert.ok(page.proxies.every((p) => p.password === ""));
    });

    test("each proxy shows its last health check: when, the latency, the error; nothing before the first", async () => {
      const before = Date.now();
      const page = await sys.proxies.listProxies({});
      const by = new Map(page.proxies.map((p) => [p.id, p]));
      const c = by.get(ids.c)!;
      assert.ok(c.lastCheckedAt, "c was checked");
      assert.ok(Number(c.lastCheckedAt.seconds) * 1000 <= before && Number(c.lastCheckedAt.seconds) * 1000 > before - 120_000);
      assert.notEqual(c.lastError, "", "c's check failed and says why");
      const b = by.get(ids.b)!;
      assert.equal(b.lastCheckedAt, undefined);
      assert.equal(b.lastLatencyMs, 0);
      assert.equal(b.lastError, "");
    });

    test("health, tag and allocation filters, alone and together, with pagination and total_count", async () => {
      assert.deepEqual(await names({}), ["a", "b", "c", "d"]);
      assert.deepEqual(await names({ health: ProxyHealthFilter.UNHEALTHY }), ["c"]);
      assert.deepEqual(await names({ health: ProxyHealthFilter.HEALTHY }), ["a", "b", "d"]);
      assert.deepEqual(await names({ tag: "mobile" }), ["a", "b"]);
      assert.deepEqual(await names({ tag: "ru" }), ["a", "d"]);
      assert.deepEqual(await names({ tag: "nope" }), []);
      assert.deepEqual(await names({ allocation: ProxyAllocationFilter.ALLOCATED }), ["a", "d"]);
      assert.deepEqual(await names({ allocation: ProxyAllocationFilter.FREE }), ["b", "c"]);
      assert.deepEqual(await names({ allocation: ProxyAllocationFilter.FREE, tag: "dc", health: ProxyHealthFilter.UNHEALTHY }), ["c"]);
      assert.deepEqual(await names({ allocation: ProxyAllocationFilter.ALLOCATED, tag: "dc", provider: "pd" }), ["d"]);
    });

    test("a released account leaves its proxy's list; bad filters and mismatched tokens are refused", async () => {
      await sys.proxies.releaseProxy({ accountId: accounts[2] });
      assert.deepEqual(await names({ allocation: ProxyAllocationFilter.FREE }), ["b", "c", "d"]);
      await sys.proxies.allocateProxy({ accountId: accounts[2], preferredProvider: "pd" });
      await rejectsWith(sys.proxies.listProxies({ health: 7 as ProxyHealthFilter }), Code.InvalidArgument, /health/);
      await rejectsWith(sys.proxies.listProxies({ allocation: 9 as ProxyAllocationFilter }), Code.InvalidArgument, /allocation/);
      await rejectsWith(sys.proxies.listProxies({ tag: "x".repeat(65) }), Code.InvalidArgument, /tag/);
      const first = await sys.proxies.listProxies({ tag: "mobile", pageSize: 1 });
      await rejectsWith(sys.proxies.listProxies({ tag: "dc", pageSize: 1, pageToken: first.nextPageToken }), Code.InvalidArgument, /page_token/);
    });
  });
}
