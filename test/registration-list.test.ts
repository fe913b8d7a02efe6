/**
 * GetRegistration and ListRegistrations on the platform services over real gRPC with tokens: a
 * real Register that succeeds and one that fails (no free proxy), then stored registrations for
 * keyset pages, filters by state, creation time and batch, total_count, the platform boundary and
 * bad arguments.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { RegistrationState } from "../src/gen/conveer/v1/platform_pb.js";
import type { ListRegistrationsRequestSchema, Registration } from "../src/gen/conveer/v1/platform_pb.js";
import { MailService } from "../src/gen/conveer/v1/mail_pb.js";
import { TelegramService } from "../src/gen/conveer/v1/telegram_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { createToken } from "../src/auth/tokens.ts";
import * as regStore from "../src/platforms/registration-store.ts";
import { remoteClient } from "../src/server/clients.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { STORE_KINDS } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { startEchoTarget, startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";
import { rejectsWith } from "./support/grpc.ts";

const BASE = new Date("2025-06-01T10:00:00Z");
const HOUR = 3_600_000;

for (const kind of STORE_KINDS) {
  describe(`registrations on the platform services on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    let proxy: LocalProxy;
    const sessions: Http2SessionManager[] = [];
    let vk: Client<typeof VKService>;
    let tg: Client<typeof TelegramService>;
    let vkWriter: Client<typeof VKService>;
    let vkOther: Client<typeof VKService>;
    /** The stored vk fixtures by id: index i was created at BASE + i minutes. */
    const fixtures = new Map<string, number>();
    const telegramIds: string[] = [];
    let reader = "";
    let succeededId = "";
    let failedId = "";

    before(async () => {
      echo = await startEchoTarget();
      proxy = await startHttpConnectProxy();
      sys = await startTestSystem(kind, {
        backgroundChecks: false,
        env: {
          CONVEER_AUTH: "tokens",
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
        },
      });
      const newId = createIdGenerator();
      const admin = await createToken(sys.db, newId(), "admin", ["*"]);
      reader = await createToken(sys.db, newId(), "reader", ["platforms:read"]);
      const writer = await createToken(sys.db, newId(), "writer", ["platforms:write"]);
      const other = await createToken(sys.db, newId(), "other", ["warming:admin", "accounts:read"]);
      vk = remoteClient(VKService, { addr: sys.addr("vk"), token: reader, sessions });
      tg = remoteClient(TelegramService, { addr: sys.addr("telegram"), token: reader, sessions });
      vkWriter = remoteClient(VKService, { addr: sys.addr("vk"), token: writer, sessions });
      vkOther = remoteClient(VKService, { addr: sys.addr("vk"), token: other, sessions });

      // A real success (the one proxy slot) and a real failure (no slot left).
      const added = await sys.as(admin).proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 1 }] });
      assert.ok(added.results[0].proxyId, added.results[0].error);
      const ok = await vkWriter.register({ login: `listed_ok_${kind}`, batchId: "real.batch-1" }, { timeoutMs: 60_000 });
      assert.ok(ok.success, `${ok.failedStep}: ${ok.error}`);
      succeededId = ok.registrationId;
      const bad = await vkWriter.register({ login: `listed_bad_${kind}`, batchId: "real.batch-1" }, { timeoutMs: 60_000 });
      assert.equal(bad.success, false);
      assert.equal(bad.failedStep, "allocate_proxy");
      failedId = bad.registrationId;

      // Stored ones, created BASE + i minutes: i%3 = 0 failed at rent_number, 1 succeeded, 2 running at sign_up.
      for (let i = 0; i < 21; i++) {
        const id = newId();
        await regStore.insertRegistration(sys.db, id, "vk", `fx_${i}`, HOUR, i < 6 ? "fx-early" : "");
        const claim = { id, claim: regStore.FIRST_CLAIM };
        if (i % 3 === 2) await regStore.advance(sys.db, [{ c: claim, step: "sign_up", fields: { account_id: `acc${i}`, proxy_id: `proxy${i}`, activation_id: `act${i}` }, leaseMs: HOUR }]);
        if (i % 3 === 1) await regStore.finishRegistration(sys.db, claim, "succeeded");
        if (i % 3 === 0) await regStore.finishRegistration(sys.db, claim, "failed", "rent_number", "no numbers for ru");
        await sys.db.query("UPDATE registrations SET created_at = $2 WHERE id = $1", [id, new Date(BASE.getTime() + i * 60_000)]);
        fixtures.set(id, i);
      }
      for (let i = 0; i < 4; i++) {
        const id = newId();
        await regStore.insertRegistration(sys.db, id, "telegram", `tg_${i}`, HOUR);
        await regStore.finishRegistration(sys.db, { id, claim: regStore.FIRST_CLAIM }, "succeeded");
        telegramIds.push(id);
      }
    });

    after(async () => {
      for (const s of sessions) s.abort();
      await sys?.stop();
      await proxy?.close();
      await echo?.close();
    });

    async function allPages(req: MessageInitShape<typeof ListRegistrationsRequestSchema>, size: number): Promise<{ regs: Registration[]; totals: bigint[] }> {
      const regs: Registration[] = [];
      const totals: bigint[] = [];
      let pageToken = "";
      do {
        const page = await vk.listRegistrations({ ...req, pageSize: size, pageToken });
        assert.ok(page.registrations.length <= size);
        regs.push(...page.registrations);
        totals.push(page.totalCount);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return { regs, totals };
    }

    test("GetRegistration shows what Register did: steps, holdings, timings", async () => {
      const ok = await vk.getRegistration({ registrationId: succeededId });
      assert.equal(ok.state, RegistrationState.SUCCEEDED);
      assert.equal(ok.platform, "vk");
      assert.equal(ok.login, `listed_ok_${kind}`);
      assert.equal(ok.step, "done");
      assert.equal(ok.failedStep, "");
      assert.match(ok.accountId, /^[0-9a-f]{24}$/);
      assert.match(ok.proxyId, /^[0-9a-f]{24}$/);
      assert.match(ok.activationId, /^[0-9a-f]{24}$/);
      assert.ok(ok.createdAt && ok.updatedAt && ok.finishedAt);
      assert.ok(ok.finishedAt.seconds >= ok.createdAt.seconds);
      const bad = await vk.getRegistration({ registrationId: failedId });
      assert.equal(bad.state, RegistrationState.FAILED);
      assert.equal(bad.failedStep, "allocate_proxy");
      assert.match(bad.error, /proxy/i);
      assert.equal(bad.proxyId, "");
      const running = await vk.getRegistration({ registrationId: [...fixtures].find(([, i]) => i === 2)![0] });
      assert.equal(running.state, RegistrationState.RUNNING);
      assert.equal(running.step, "sign_up");
      assert.equal(running.proxyId, "proxy2");
      assert.equal(running.activationId, "act2");
      assert.equal(running.finishedAt, undefined);
    });

    test("GetRegistration: NOT_FOUND across platforms or for an unknown id, INVALID_ARGUMENT for a malformed one", async () => {
      await rejectsWith(vk.getRegistration({ registrationId: telegramIds[0] }), Code.NotFound, /registration/);
      assert.equal((await tg.getRegistration({ registrationId: telegramIds[0] })).login, "tg_0");
      await rejectsWith(vk.getRegistration({ registrationId: "0123456789abcdef01234567" }), Code.NotFound);
      await rejectsWith(vk.getRegistration({ registrationId: "x" }), Code.InvalidArgument, /registration_id/);
      await rejectsWith(vk.getRegistration({ registrationId: "" }), Code.InvalidArgument, /registration_id/);
    });

    test("pages cover the platform's registrations once, newest first, with the total on every page", async () => {
      const { regs, totals } = await allPages({}, 5);
      const ids = regs.map((r) => r.id);
      assert.equal(ids.length, 23);
      assert.equal(new Set(ids).size, 23, "no duplicates");
      assert.deepEqual(ids, [...ids].sort().reverse(), "newest (highest id) first");
      assert.deepEqual(new Set(ids), new Set([...fixtures.keys(), succeededId, failedId]), "no gaps, no other platform");
      assert.deepEqual(totals, [23n, 23n, 23n, 23n, 23n]);
      const tgAll = await tg.listRegistrations({});
      assert.deepEqual(
        tgAll.registrations.map((r) => r.id),
        [...telegramIds].reverse(),
      );
      assert.equal(tgAll.totalCount, 4n);
    });

    test("filters: state, creation time, both", async () => {
      const failed = await allPages({ state: RegistrationState.FAILED }, 3);
      assert.deepEqual(new Set(failed.regs.map((r) => r.id)), new Set([failedId, ...[...fixtures].filter(([, i]) => i % 3 === 0).map(([id]) => id)]));
      assert.equal(failed.totals[0], 8n);
      assert.ok(failed.regs.every((r) => r.state === RegistrationState.FAILED && r.failedStep));
      const running = await vk.listRegistrations({ state: RegistrationState.RUNNING });
      assert.equal(running.totalCount, 7n);
      const window = { createdAfter: timestampFromDate(new Date(BASE.getTime() + 5 * 60_000)), createdBefore: timestampFromDate(new Date(BASE.getTime() + 10 * 60_000)) };
      const inWindow = await allPages(window, 2);
      assert.deepEqual(inWindow.regs.map((r) => fixtures.get(r.id)).sort((a, b) => a! - b!), [5, 6, 7, 8, 9]);
      assert.deepEqual(inWindow.totals, [5n, 5n, 5n]);
      const both = await vk.listRegistrations({ ...window, state: RegistrationState.SUCCEEDED });
      assert.deepEqual(both.registrations.map((r) => fixtures.get(r.id)).sort(), [7]);
      const since = await vk.listRegistrations({ createdAfter: timestampFromDate(new Date(BASE.getTime() + 20 * 60_000)) });
      assert.equal(since.totalCount, 3n, "the last fixture and the two real registrations (created now)");
    });

    test("filters: batch (RegisterRequest.batch_id), alone and with a state; a batch id Register refuses", async () => {
      const real = await vk.listRegistrations({ batchId: "real.batch-1" });
      assert.deepEqual(real.registrations.map((r) => r.id), [failedId, succeededId]);
      assert.equal(real.totalCount, 2n);
      assert.ok(real.registrations.every((r) => r.batchId === "real.batch-1"));
      assert.equal((await vk.getRegistration({ registrationId: succeededId })).batchId, "real.batch-1");
      const early = await allPages({ batchId: "fx-early" }, 4);
      assert.deepEqual(early.regs.map((r) => fixtures.get(r.id)), [5, 4, 3, 2, 1, 0]);
      assert.deepEqual(early.totals, [6n, 6n]);
      const earlyFailed = await vk.listRegistrations({ batchId: "fx-early", state: RegistrationState.FAILED });
      assert.deepEqual(earlyFailed.registrations.map((r) => fixtures.get(r.id)), [3, 0]);
      assert.equal((await vk.listRegistrations({ batchId: "nobody" })).totalCount, 0n);
      assert.equal((await tg.listRegistrations({ batchId: "real.batch-1" })).totalCount, 0n, "a batch is per platform service");
      await rejectsWith(vk.listRegistrations({ batchId: "two words" }), Code.InvalidArgument, /batch_id/);
      await rejectsWith(vkWriter.register({ batchId: "x".repeat(65) }), Code.InvalidArgument, /batch_id/);
    });

    test("an empty result is an empty page with total 0", async () => {
      const none = await vk.listRegistrations({ createdBefore: timestampFromDate(new Date(BASE.getTime() - HOUR)) });
      assert.deepEqual(none.registrations, []);
      assert.equal(none.totalCount, 0n);
      assert.equal(none.nextPageToken, "");
      const mail = remoteClient(MailService, { addr: sys.addr("mail"), token: reader, sessions });
      const nothing = await mail.listRegistrations({ state: RegistrationState.RUNNING });
      assert.equal(nothing.totalCount, 0n);
      assert.deepEqual(nothing.registrations, []);
      await rejectsWith(remoteClient(MailService, { addr: sys.addr("mail"), sessions }).listRegistrations({}), Code.Unauthenticated);
    });

    test("bad arguments answer INVALID_ARGUMENT naming the field; another area's scope cannot read", async () => {
      await rejectsWith(vk.listRegistrations({ pageToken: "garbage!" }), Code.InvalidArgument, /page_token/);
      const p1 = await vk.listRegistrations({ pageSize: 2 });
      await rejectsWith(vk.listRegistrations({ state: RegistrationState.FAILED, pageSize: 2, pageToken: p1.nextPageToken }), Code.InvalidArgument, /page_token/);
      await rejectsWith(vk.listRegistrations({ pageSize: 1001 }), Code.InvalidArgument, /page_size/);
      await rejectsWith(vk.listRegistrations({ state: 9 as RegistrationState }), Code.InvalidArgument, /state/);
      await rejectsWith(vk.listRegistrations({ createdAfter: timestampFromDate(BASE), createdBefore: timestampFromDate(BASE) }), Code.InvalidArgument, /created_after/);
      await rejectsWith(vkOther.listRegistrations({}), Code.PermissionDenied, /platforms:read/);
      await rejectsWith(vkOther.getRegistration({ registrationId: succeededId }), Code.PermissionDenied, /platforms:read/);
      assert.equal((await vkWriter.listRegistrations({ pageSize: 1 })).registrations.length, 1, "platforms:write implies platforms:read");
    });
  });
}
