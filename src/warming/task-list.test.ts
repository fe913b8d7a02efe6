import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { WarmingService, WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import type { ListWarmingTasksRequestSchema, WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createAccounts } from "../accounts/accounts.ts";
import type { Accounts } from "../accounts/accounts.ts";
import { createAuthenticator, createToken } from "../auth/tokens.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../server/grpc-server.ts";
import { remoteClient } from "../server/clients.ts";
import { createMetrics } from "../server/metrics.ts";
import { createIdGenerator } from "../store/ids.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { rejectsWith } from "../../test/support/grpc.ts";
import { fakeClock } from "./clock.ts";
import { fakePlatform } from "./fake-peers.ts";
import { localAccountsPeer } from "./peers.ts";
import { builtinScenarios } from "./scenario.ts";
import { createWarming } from "./warming.ts";
import type { Warming } from "./warming.ts";
import { warmingService } from "./warming-service.ts";

/** ListWarmingTasks (and GetWarmingStatus's login) over real gRPC with tokens: filters, keyset pages, total_count, bad tokens. */

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

for (const kind of STORE_KINDS) {
  describe(`ListWarmingTasks on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let vault: Vault;
    let accounts: Accounts;
    let warming: Warming;
    let server: grpc.Server;
    let reader: Client<typeof WarmingService>;
    let writer: Client<typeof WarmingService>;
    let other: Client<typeof WarmingService>;
    const sessions: Http2SessionManager[] = [];
    const shutdown = new AbortController();
    /** Every task started, oldest first, with its account's login and platform. */
    const started: { task: WarmingTask; login: string; platform: string }[] = [];

    before(async () => {
      store = await freshStore(kind);
      const newId = createIdGenerator();
      vault = await createVault(store.db, Buffer.alloc(32, 9), newId);
      accounts = createAccounts({ db: store.db, vault, newId });
      const clock = fakeClock(new Date("2025-03-10T06:00:00Z"));
      warming = createWarming({
        db: store.db,
        peers: { accounts: localAccountsPeer(accounts), platforms: fakePlatform().peer },
        clock,
        newId,
        log,
        scenarios: builtinScenarios(),
        options: { runWorker: false },
      });
      await warming.start();
      const readToken = await createToken(store.db, newId(), "reader", ["warming:read"]);
      const writeToken = await createToken(store.db, newId(), "writer", ["warming:write"]);
      const otherToken = await createToken(store.db, newId(), "other", ["accounts:admin", "platforms:read"]);
      server = new grpc.Server(GRPC_SERVER_OPTIONS);
      const { definition, handlers } = grpcServiceOf(warmingService(warming), { log, auth: createAuthenticator({ db: store.db, mode: "tokens" }), metrics: createMetrics(), shutdown: shutdown.signal });
      server.addService(definition, handlers);
      const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
      reader = remoteClient(WarmingService, { addr: `127.0.0.1:${port}`, token: readToken, sessions });
      writer = remoteClient(WarmingService, { addr: `127.0.0.1:${port}`, token: writeToken, sessions });
      other = remoteClient(WarmingService, { addr: `127.0.0.1:${port}`, token: otherToken, sessions });

      // 12 vk tasks (gentle; 4 stopped), 5 telegram tasks (basic; 2 paused).
      for (let i = 0; i < 17; i++) {
        const platform = i < 12 ? "vk" : "telegram";
        const login = `list_${platform}_${i}`;
        const acc = await accounts.create(create(CreateAccountRequestSchema, { platform, login, password: "pw" }), "t");
        const task = await writer.startWarming({ accountId: acc.id, scenarioId: platform === "vk" ? "gentle" : "basic" });
        started.push({ task, login, platform });
      }
      for (const s of started.slice(0, 4)) await writer.stopWarming({ taskId: s.task.id, reason: "test" });
      for (const s of started.slice(12, 14)) await writer.pauseWarming({ taskId: s.task.id });
    });

    after(async () => {
      for (const s of sessions) s.abort();
      shutdown.abort();
      server.forceShutdown();
      await warming.stop(500);
      await vault.stop();
      await store.drop();
    });

    /** Every page of a listing at the given size: the tasks in order and the total_count of each page. */
    async function allPages(req: MessageInitShape<typeof ListWarmingTasksRequestSchema>, size: number): Promise<{ tasks: WarmingTask[]; totals: bigint[]; pages: number }> {
      const tasks: WarmingTask[] = [];
      const totals: bigint[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await reader.listWarmingTasks({ ...req, pageSize: size, pageToken });
        assert.ok(page.tasks.length <= size);
        tasks.push(...page.tasks);
        totals.push(page.totalCount);
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken);
      return { tasks, totals, pages };
    }

    test("pages cover every task once, newest first, with the total on every page", async () => {
      const { tasks, totals, pages } = await allPages({}, 5);
      assert.equal(pages, 4);
      assert.deepEqual(
        tasks.map((t) => t.id),
        started.map((s) => s.task.id).reverse(),
        "every task once, newest first",
      );
      assert.deepEqual(totals, [17n, 17n, 17n, 17n]);
      const first = tasks.at(-1)!;
      assert.equal(first.accountLogin, "list_vk_0");
      assert.equal(first.platform, "vk");
      assert.equal(first.status, WarmingStatus.STOPPED);
      assert.equal(first.totalDays, 7);
      // An exact multiple of the page size ends without an empty page.
      const exact = await allPages({ platform: "telegram" }, 5);
      assert.equal(exact.pages, 1);
      assert.equal(exact.tasks.length, 5);
    });

    test("each item is what GetWarmingStatus answers, login and platform included", async () => {
      const page = await reader.listWarmingTasks({ platform: "telegram", status: WarmingStatus.PAUSED });
      const one = await reader.getWarmingStatus({ taskId: page.tasks[0].id });
      assert.deepEqual(page.tasks[0], one);
      assert.equal(one.accountLogin, "list_telegram_13");
      assert.equal(one.platform, "telegram");
    });

    test("filters: status, platform, account, scenario, and together", async () => {
      const ids = (ts: WarmingTask[]) => ts.map((t) => t.id).sort();
      const want = (pick: (s: (typeof started)[number], i: number) => boolean) => started.filter(pick).map((s) => s.task.id).sort();
      const stopped = await allPages({ status: WarmingStatus.STOPPED }, 3);
      assert.deepEqual(ids(stopped.tasks), want((_, i) => i < 4));
      assert.equal(stopped.totals[0], 4n);
      const tg = await allPages({ platform: "telegram" }, 2);
      assert.deepEqual(ids(tg.tasks), want((s) => s.platform === "telegram"));
      assert.deepEqual(tg.totals, [5n, 5n, 5n]);
      const running = await allPages({ platform: "vk", status: WarmingStatus.RUNNING }, 100);
      assert.deepEqual(ids(running.tasks), want((s, i) => s.platform === "vk" && i >= 4));
      assert.equal(running.totals[0], 8n);
      const gentle = await reader.listWarmingTasks({ scenarioId: "gentle" });
      assert.equal(gentle.totalCount, 12n);
      assert.ok(gentle.tasks.every((t) => t.scenarioId === "gentle"));
      const one = started[7].task;
      const byAccount = await reader.listWarmingTasks({ accountId: one.accountId });
      assert.deepEqual(
        byAccount.tasks.map((t) => t.id),
        [one.id],
      );
      assert.equal(byAccount.totalCount, 1n);
      assert.equal(byAccount.nextPageToken, "");
    });

    test("an empty result is an empty page with total 0", async () => {
      const none = await reader.listWarmingTasks({ accountId: "0123456789abcdef01234567" });
      assert.deepEqual(none.tasks, []);
      assert.equal(none.totalCount, 0n);
      assert.equal(none.nextPageToken, "");
      const noneTg = await reader.listWarmingTasks({ platform: "mail" });
      assert.equal(noneTg.totalCount, 0n);
      assert.equal((await reader.listWarmingTasks({ scenarioId: "intensive" })).tasks.length, 0);
    });

    test("a task started between pages does not shift the pages after it", async () => {
      const p1 = await reader.listWarmingTasks({ platform: "vk", pageSize: 6 });
      const acc = await accounts.create(create(CreateAccountRequestSchema, { platform: "vk", login: "list_late", password: "pw" }), "t");
      const late = await writer.startWarming({ accountId: acc.id, scenarioId: "gentle" });
      const p2 = await reader.listWarmingTasks({ platform: "vk", pageSize: 6, pageToken: p1.nextPageToken });
      const seen = [...p1.tasks, ...p2.tasks].map((t) => t.id);
      assert.equal(new Set(seen).size, 12);
      assert.ok(!seen.includes(late.id));
      assert.equal(p2.totalCount, 13n, "the total counts what matches now");
      assert.equal(p2.nextPageToken, "");
      await writer.stopWarming({ taskId: late.id, reason: "test" });
    });

    test("bad arguments answer INVALID_ARGUMENT naming the field; another area's scope cannot list", async () => {
      await rejectsWith(reader.listWarmingTasks({ pageToken: "nonsense" }), Code.InvalidArgument, /page_token/);
      const p1 = await reader.listWarmingTasks({ platform: "vk", pageSize: 2 });
      await rejectsWith(reader.listWarmingTasks({ platform: "telegram", pageSize: 2, pageToken: p1.nextPageToken }), Code.InvalidArgument, /page_token/);
      await rejectsWith(reader.listWarmingTasks({ pageSize: 5000 }), Code.InvalidArgument, /page_size/);
      await rejectsWith(reader.listWarmingTasks({ pageSize: -1 }), Code.InvalidArgument, /page_size/);
      await rejectsWith(reader.listWarmingTasks({ platform: "myspace" }), Code.InvalidArgument, /platform/);
      await rejectsWith(reader.listWarmingTasks({ accountId: "nope" }), Code.InvalidArgument, /account_id/);
      await rejectsWith(reader.listWarmingTasks({ status: 42 as WarmingStatus }), Code.InvalidArgument, /status/);
      await rejectsWith(other.listWarmingTasks({}), Code.PermissionDenied, /warming:read/);
      assert.equal((await writer.listWarmingTasks({ pageSize: 1 })).tasks.length, 1, "warming:write implies warming:read");
    });
  });
}
