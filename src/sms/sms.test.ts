import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openPostgres } from "../store/postgres.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { FakeSmsProvider } from "./fake-sms-provider.ts";
import { createSms } from "./sms.ts";
import type { Sms, SmsDeps } from "./sms.ts";
import { rejectsWithAppError as rejectsWith } from "../../test/support/assert.ts";
import { startTcpRelay } from "../../test/support/tcp-relay.ts";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const VK = { service: "vk", country: "", operator: "" };


/** Polls until fn() is truthy (test-side only). */
async function eventually(fn: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await sleep(10);
  }
}

for (const kind of STORE_KINDS) {
  describe(`SMS domain on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    const stops: (() => Promise<void>)[] = [];
    const newId = createIdGenerator();

    /** A started SMS domain over the test's store. */
    async function smsWith(providers: SmsDeps["providers"], extra: Partial<SmsDeps> = {}, on: Db = db): Promise<Sms> {
      const sms = createSms({ db: on, providers, newId, log, ...extra });
      await sms.start();
      stops.push(() => sms.stop());
      return sms;
    }

    async function status(id: string): Promise<number> {
      return (await db.query<{ status: number }>("SELECT status FROM sms_activations WHERE id = $1", [id])).rows[0].status;
    }

    beforeEach(async () => {
      store = await freshStore(kind);
      db = store.db;
    });
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop();
      await store.drop();
    });

    test("GetNumber rents from the default provider, which takes the price; the activation is stored with its history", async () => {
      const fake = new FakeSmsProvider({ balance: 100, price: 15, ttlMs: 600_000 });
      const sms = await smsWith([fake, new FakeSmsProvider({ name: "second", currency: "USD", balance: 7 })]);
      const a = await sms.getNumber(VK, "tester");
      assert.match(a.id, /^[0-9a-f]{24}$/);
      assert.match(a.phone, /^\+7999\d{7}$/);
      assert.deepEqual([a.service, a.country, a.status], ["vk", "ru", SMSStatus.SMS_STATUS_WAITING_CODE]);
      const expires = Number(a.expiresAt!.seconds) * 1000;
      assert.ok(Math.abs(expires - (Date.now() + 600_000)) < 5000, "expires_at is the rental's end");

      const bal = await sms.balance("");
      assert.deepEqual([bal.balance, bal.currency, bal.provider], [85, "RUB", "fake"]);
      const other = await sms.balance("second");
      assert.deepEqual([other.balance, other.currency, other.provider], [7, "USD", "second"]);

      const row = (await db.query<{ provider: string; price: number; phone: string; country: string; operator: string }>("SELECT provider, price, phone, country, operator FROM sms_activations WHERE id = $1", [a.id])).rows[0];
      assert.deepEqual(row, { provider: "fake", price: 15, phone: a.phone, country: "ru", operator: "" });
      const h = await sms.history(a.id);
      assert.deepEqual(h.map((x) => [x.from_status, x.to_status, x.author]), [[null, SMSStatus.SMS_STATUS_WAITING_CODE, "tester"]]);

      const b = await sms.getNumber({ service: "telegram", country: "KZ", operator: "beeline" });
      assert.equal(b.country, "kz");
      assert.equal((await sms.balance("")).balance, 70);
    });

    test("a code that arrives wakes a waiting GetCode; later calls answer at once", async () => {
      const fake = new FakeSmsProvider();
      const sms = await smsWith([fake]);
      const a = await sms.getNumber(VK);
      const waiting = sms.getCode(a.id, 30);
      await eventually(() => sms.stats().waiters === 1);
      const t0 = performance.now();
      assert.ok(fake.deliver(fake.refOf(a.phone)!, "123456"));
      const got = await waiting;
      assert.ok(performance.now() - t0 < 1000, "woken promptly, not at a poll or deadline");
      assert.deepEqual([got.success, got.code, got.error], [true, "123456", ""]);
      assert.equal(await status(a.id), SMSStatus.SMS_STATUS_CODE_RECEIVED);
      const again = await sms.getCode(a.id, 0);
      assert.deepEqual([again.success, again.code], [true, "123456"]);
      const h = await sms.history(a.id);
      assert.deepEqual(h.map((x) => [x.from_status, x.to_status, x.reason]), [
        [null, SMSStatus.SMS_STATUS_WAITING_CODE, "rented from fake"],
        [SMSStatus.SMS_STATUS_WAITING_CODE, SMSStatus.SMS_STATUS_CODE_RECEIVED, "code received"],
      ]);
      assert.equal(sms.stats().waiters, 0);

      // Many waiters on one activation are all woken by its one code.
      const b = await sms.getNumber(VK);
      const many = Array.from({ length: 50 }, () => sms.getCode(b.id, 30));
      await eventually(() => sms.stats().waiters === 50);
      fake.deliver(fake.refOf(b.phone)!, "777");
      for (const r of await Promise.all(many)) assert.equal(r.code, "777");
    });

    test("a GetCode after its code was recorded here answers without reading the store; another replica reads it", async () => {
      const fake = new FakeSmsProvider();
      let reads = 0;
      let releases = 0;
      const counting: Db = {
        ...db,
        query: (sql, params) => {
          if (/^\s*SELECT/i.test(sql) && /sms_activations/.test(sql)) reads++;
          if (/^\s*UPDATE sms_activations SET released/i.test(sql)) releases++;
          return db.query(sql, params);
        },
      } as Db;
      const sms = await smsWith([fake], {}, counting);
      const a = await sms.getNumber(VK);
      assert.ok(fake.deliver(fake.refOf(a.phone)!, "654321"));
      await eventually(async () => (await status(a.id)) === SMSStatus.SMS_STATUS_CODE_RECEIVED);
      await sleep(20);
      const before = reads;
      const got = await sms.getCode(a.id, 5);
      assert.deepEqual([got.success, got.code], [true, "654321"]);
      assert.equal(reads, before, "answered from the code this process recorded");
      // The answer stays the code once the activation is completed (the only status after CODE_RECEIVED but COMPLETED).
      // Completing it finishes the rental first, then records the completion and the release in one statement.
      const done = await sms.cancel(a.id);
      assert.deepEqual([done.success, done.refunded], [true, false]);
      assert.equal(await status(a.id), SMSStatus.SMS_STATUS_COMPLETED);
      assert.equal(fake.calls.finish, 1);
      assert.equal(releases, 0, "no statement of its own for the release");
      const settledRow = (await db.query<{ released: boolean; refunded: boolean }>("SELECT released, refunded FROM sms_activations WHERE id = $1", [a.id])).rows[0];
      assert.deepEqual(settledRow, { released: true, refunded: false });
      assert.deepEqual((await sms.sweep()).settled, 0, "nothing left for the sweeper");
      await sms.cancel(a.id);
      assert.equal(fake.calls.finish, 1, "a second cancel finishes nothing again");
      // The provider cannot finish it: the completion is recorded all the same, the release left for the sweeper.
      const c = await sms.getNumber(VK);
      assert.ok(fake.deliver(fake.refOf(c.phone)!, "111222"));
      await eventually(async () => (await status(c.id)) === SMSStatus.SMS_STATUS_CODE_RECEIVED);
      await sleep(20);
      fake.failWith = new Error("connection reset");
      const unsettled = await sms.cancel(c.id);
      fake.failWith = undefined;
      assert.equal(unsettled.success, true);
      assert.equal(await status(c.id), SMSStatus.SMS_STATUS_COMPLETED);
      assert.equal((await db.query<{ released: boolean }>("SELECT released FROM sms_activations WHERE id = $1", [c.id])).rows[0].released, false);
      assert.deepEqual([(await sms.getCode(a.id, 5)).code], ["654321"]);
      // A replica that did not record it reads the store and answers the same.
      const other = await smsWith([new FakeSmsProvider()]);
      const there = await other.getCode(a.id, 5);
      assert.deepEqual([there.success, there.code], [true, "654321"]);
      // Nothing remembered for an activation still waiting: it reads and waits.
      const b = await sms.getNumber(VK);
      const r = await sms.getCode(b.id, 1);
      assert.equal(r.success, false);
      assert.ok(reads > before, "a waiting activation is read");
    });

    test("a code that arrives before its activation is stored is kept and applied", async () => {
      const fake = new FakeSmsProvider();
      const sms = await smsWith([fake]);
      // The fake's first rental will be "r1"; its SMS comes before GetNumber has stored the row.
      fake.emit({ ref: "r1", phone: "+79990000000", text: "code 4242", code: "4242", at: new Date() });
      await eventually(() => sms.stats().unmatchedCodes === 1);
      const a = await sms.getNumber(VK);
      const got = await sms.getCode(a.id, 5);
      assert.deepEqual([got.success, got.code], [true, "4242"]);
      assert.equal(sms.stats().unmatchedCodes, 0);
    });

    test("GetCode times out with success=false, and answers before the caller's deadline", async () => {
      const sms = await smsWith([new FakeSmsProvider()]);
      const a = await sms.getNumber(VK);
      let t0 = performance.now();
      const r = await sms.getCode(a.id, 1);
      const took = performance.now() - t0;
      assert.equal(r.success, false);
      assert.match(r.error, /timed out after 1s/);
      assert.ok(took >= 990 && took < 2500, `took ${took} ms`);

      t0 = performance.now();
      const d = await sms.getCode(a.id, 60, { timeoutMs: 600 });
      const tookD = performance.now() - t0;
      assert.equal(d.success, false);
      assert.match(d.error, /timed out at the call's deadline/);
      assert.ok(tookD < 600 && tookD > 300, `answered ${tookD} ms into a 600 ms deadline`);
      assert.equal(sms.stats().waiters, 0);
    });

    test("the caller's cancellation ends the wait promptly", async () => {
      const sms = await smsWith([new FakeSmsProvider()]);
      const a = await sms.getNumber(VK);
      const ac = new AbortController();
      const waiting = sms.getCode(a.id, 120, { signal: ac.signal });
      await eventually(() => sms.stats().waiters === 1);
      const t0 = performance.now();
      ac.abort();
      await rejectsWith(waiting, "CANCELLED", /cancelled while waiting/);
      assert.ok(performance.now() - t0 < 200);
      assert.equal(sms.stats().waiters, 0);
      // An already aborted signal does not even read the store.
      await rejectsWith(sms.getCode(a.id, 5, { signal: AbortSignal.abort() }), "CANCELLED");
    });

    test("CancelActivation refunds when no code came; a later code is ignored; cancel after a code is refused", async () => {
      const fake = new FakeSmsProvider({ balance: 100, price: 10 });
      const sms = await smsWith([fake]);
      const a = await sms.getNumber(VK, "alice");
      const ref = fake.refOf(a.phone)!;
      assert.equal(await fake.balance(), 90);
      const waiting = sms.getCode(a.id, 30);
      await eventually(() => sms.stats().waiters === 1);
      const c = await sms.cancel(a.id, "alice");
      assert.deepEqual([c.success, c.refunded, c.error], [true, true, ""]);
      assert.equal(await fake.balance(), 100);
      const woken = await waiting;
      assert.deepEqual([woken.success, woken.error], [false, "activation was cancelled"]);

      // A late SMS for the cancelled rental changes nothing.
      fake.emit({ ref, phone: a.phone, text: "late 999", code: "999", at: new Date() });
      await sleep(100);
      assert.equal(await status(a.id), SMSStatus.SMS_STATUS_CANCELLED);
      const r = await sms.getCode(a.id, 5);
      assert.deepEqual([r.success, r.code, r.error], [false, "", "activation was cancelled"]);
      // Cancelling again is idempotent and does not refund twice.
      const again = await sms.cancel(a.id);
      assert.deepEqual([again.success, again.refunded], [true, true]);
      assert.equal(await fake.balance(), 100);
      assert.equal(fake.calls.cancel, 1);
      const h = await sms.history(a.id);
      assert.deepEqual(h.map((x) => [x.to_status, x.author]), [[SMSStatus.SMS_STATUS_WAITING_CODE, "alice"], [SMSStatus.SMS_STATUS_CANCELLED, "alice"]]);

      const b = await sms.getNumber(VK);
      fake.deliver(fake.refOf(b.phone)!, "55");
      await eventually(async () => (await status(b.id)) === SMSStatus.SMS_STATUS_CODE_RECEIVED);
      const completed = await sms.cancel(b.id);
      assert.equal(completed.success, true);
      assert.equal(completed.refunded, false);
      assert.match(completed.error, /completed.*without a refund/);
      assert.equal(await status(b.id), SMSStatus.SMS_STATUS_COMPLETED);
      assert.equal(await fake.balance(), 90, "b's price is spent");

      await rejectsWith(sms.cancel("0123456789abcdef01234567"), "NOT_FOUND");
    });

    test("a refund the provider cannot confirm is reported and retried by the sweeper", async () => {
      const fake = new FakeSmsProvider({ balance: 50, price: 10 });
      const sms = await smsWith([fake], { options: { releaseRetryMs: 0 } });
      const a = await sms.getNumber(VK);
      fake.failWith = new Error("connection reset");
      await rejectsWith(sms.cancel(a.id), "UNAVAILABLE", /cancelled.*refund is not confirmed.*connection reset/);
      assert.equal(await status(a.id), SMSStatus.SMS_STATUS_CANCELLED);
      fake.failWith = undefined;
      const swept = await sms.sweep();
      assert.equal(swept.settled, 1);
      assert.equal(await fake.balance(), 50);
      const row = (await db.query<{ released: boolean; refunded: boolean }>("SELECT released, refunded FROM sms_activations WHERE id = $1", [a.id])).rows[0];
      assert.deepEqual(row, { released: true, refunded: true });
      assert.equal((await sms.sweep()).settled, 0);
    });

    test("no free number or a short balance is RESOURCE_EXHAUSTED, and nothing is stored", async () => {
      const one = await smsWith([new FakeSmsProvider({ numbers: 1 })]);
      await one.getNumber(VK);
      await rejectsWith(one.getNumber(VK), "RESOURCE_EXHAUSTED", /no free number/);
      const poor = await smsWith([new FakeSmsProvider({ name: "poor", balance: 5, price: 10 })]);
      await rejectsWith(poor.getNumber(VK), "RESOURCE_EXHAUSTED", /balance.*too low/);
      const n = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM sms_activations")).rows[0].n;
      assert.equal(n, 1);
    });

    test("bad input names the field; unknown ids are NOT_FOUND; an unreachable provider is UNAVAILABLE", async () => {
      const fake = new FakeSmsProvider({ services: ["vk", "telegram", "mail"] });
      const sms = await smsWith([fake]);
      await rejectsWith(sms.getNumber({ ...VK, service: "whatsapp" }), "INVALID_ARGUMENT", /^service must be one of vk, telegram, mail, max/);
      await rejectsWith(sms.getNumber({ ...VK, service: "" }), "INVALID_ARGUMENT", /^service is required/);
      await rejectsWith(sms.getNumber({ ...VK, service: "max" }), "INVALID_ARGUMENT", /^service is not offered/);
      await rejectsWith(sms.getNumber({ ...VK, country: "russia" }), "INVALID_ARGUMENT", /^country/);
      await rejectsWith(sms.getNumber({ ...VK, operator: "mts; drop" }), "INVALID_ARGUMENT", /^operator/);
      assert.equal(fake.calls.rent, 1, "invalid requests never reach the provider");
      await rejectsWith(sms.getCode("", 5), "INVALID_ARGUMENT", /^activation_id is required/);
      await rejectsWith(sms.getCode("nope", 5), "INVALID_ARGUMENT", /^activation_id must be a 24-hex id/);
      await rejectsWith(sms.getCode("0123456789abcdef01234567", 5), "NOT_FOUND", /activation/);
      const a = await sms.getNumber(VK);
      await rejectsWith(sms.getCode(a.id, 601), "INVALID_ARGUMENT", /^timeout_seconds must be between 1 and 600/);
      await rejectsWith(sms.getCode(a.id, -1), "INVALID_ARGUMENT", /^timeout_seconds/);
      await rejectsWith(sms.balance("elsewhere"), "INVALID_ARGUMENT", /^provider must be empty \(the default, fake\)/);
      fake.failWith = new Error("ECONNREFUSED");
      await rejectsWith(sms.getNumber(VK), "UNAVAILABLE", /fake could not rent a number: ECONNREFUSED/);
      await rejectsWith(sms.balance(""), "UNAVAILABLE", /balance/);
    });

    test("a code recorded by another replica wakes a waiter here", async () => {
      const fake = new FakeSmsProvider();
      // Replica A does not hear the provider; replica B does and records the code.
      const a = await smsWith([fake.withoutMessages()]);
      let dbB = db;
      if (kind === "postgres") {
        dbB = openPostgres({ url: store.url, max: 4 });
        stops.push(() => dbB.close());
      }
      const b = await smsWith([fake], {}, dbB);
      const act = await a.getNumber(VK);
      const waiting = a.getCode(act.id, 30);
      await eventually(() => a.stats().waiters === 1);
      const t0 = performance.now();
      fake.deliver(fake.refOf(act.phone)!, "31337");
      const got = await waiting;
      assert.ok(performance.now() - t0 < 2000);
      assert.deepEqual([got.success, got.code], [true, "31337"]);
      assert.equal(b.stats().waiters, 0);
      // A cancel on B wakes A's waiter with the cancellation.
      const act2 = await a.getNumber(VK);
      const waiting2 = a.getCode(act2.id, 30);
      await eventually(() => a.stats().waiters === 1);
      await b.cancel(act2.id);
      assert.equal((await waiting2).error, "activation was cancelled");
    });

    test("a waiter whose LISTEN connection was lost while another replica recorded the code still wakes once the store is back", { skip: kind !== "postgres" && "PGlite has no connection to lose" }, async () => {
      const u = new URL(store.url);
      const relay = await startTcpRelay(u.hostname, Number(u.port || 5432));
      stops.push(() => relay.close());
      u.hostname = "127.0.0.1";
      u.port = String(relay.port);
      const dbA = openPostgres({ url: u.toString(), max: 4, connectTimeoutMs: 500 });
      stops.push(() => dbA.close());
      const fake = new FakeSmsProvider();
      // Replica A reaches the store through the relay and does not hear the provider; B records the code.
      const a = await smsWith([fake.withoutMessages()], {}, dbA);
      const dbB = openPostgres({ url: store.url, max: 4 });
      stops.push(() => dbB.close());
      await smsWith([fake], {}, dbB);
      const act = await a.getNumber(VK);
      const waiting = a.getCode(act.id, 30);
      await eventually(() => a.stats().waiters === 1);
      // A's connections are cut and refused: the NOTIFY for the code below never reaches A.
      await relay.set("refuse");
      fake.deliver(fake.refOf(act.phone)!, "31337");
      await eventually(async () => (await db.query<{ code: string }>("SELECT code FROM sms_activations WHERE id = $1", [act.id])).rows[0]?.code === "31337");
      await sleep(300);
      await relay.set("pass");
      const t0 = performance.now();
      const got = await Promise.race([waiting, sleep(8000).then(() => undefined)]);
      assert.ok(got, "the waiter woke after the store came back (it re-read on resubscribe), not at its 30 s deadline");
      assert.deepEqual([got.success, got.code], [true, "31337"]);
      assert.ok(performance.now() - t0 < 5000);
    });

    test("the sweeper ends expired activations: no code → FAILED and refunded, code → COMPLETED and finished", async () => {
      let clock = Date.now();
      const fake = new FakeSmsProvider({ balance: 100, price: 10, ttlMs: 60_000 });
      const sms = await smsWith([fake], { now: () => new Date(clock) });
      const a = await sms.getNumber(VK);
      const b = await sms.getNumber(VK);
      const fresh = await sms.getNumber(VK);
      fake.deliver(fake.refOf(b.phone)!, "42");
      await eventually(async () => (await status(b.id)) === SMSStatus.SMS_STATUS_CODE_RECEIVED);
      const waiting = sms.getCode(a.id, 30);
      await eventually(() => sms.stats().waiters === 1);
      assert.deepEqual(await sms.sweep(), { expired: 0, completed: 0, settled: 0, codes: 0 });
      // Rentals of a and b end; `fresh` was rented last but its expiry is moved out of reach.
      await db.query("UPDATE sms_activations SET expires_at = expires_at + interval '1 hour' WHERE id = $1", [fresh.id]);
      clock += 61_000;
      assert.deepEqual(await sms.sweep(), { expired: 1, completed: 1, settled: 2, codes: 0 });
      const woken = await waiting;
      assert.equal(woken.success, false);
      assert.match(woken.error, /expired .* without a code/);
      assert.equal(await status(a.id), SMSStatus.SMS_STATUS_FAILED);
      assert.equal(await status(b.id), SMSStatus.SMS_STATUS_COMPLETED);
      assert.equal(await status(fresh.id), SMSStatus.SMS_STATUS_WAITING_CODE);
      assert.equal(await fake.balance(), 80, "a's price came back; b's was spent; fresh is still rented");
      assert.equal(fake.calls.finish, 1);
      const h = await sms.history(a.id);
      assert.deepEqual(h.at(-1) && [h.at(-1)!.to_status, h.at(-1)!.reason, h.at(-1)!.author], [SMSStatus.SMS_STATUS_FAILED, "expired without a code", "sweeper"]);
      assert.deepEqual((await sms.getCode(b.id, 1)).code, "42");
      const c = await sms.cancel(a.id);
      assert.equal(c.success, false);
      assert.match(c.error, /expired without a code and was refunded/);
      assert.deepEqual(await sms.sweep(), { expired: 0, completed: 0, settled: 0, codes: 0 });
    });

    test("the background sweeper runs on its own between start() and stop()", async () => {
      const fake = new FakeSmsProvider({ ttlMs: 50 });
      const sms = await smsWith([fake], { options: { sweepIntervalMs: 20 } });
      const a = await sms.getNumber(VK);
      await eventually(async () => (await status(a.id)) === SMSStatus.SMS_STATUS_FAILED);
      const r = await sms.getCode(a.id, 1);
      assert.match(r.error, /expired/);
      await sms.stop();
      assert.equal(fake.listeners, 0, "stop() unsubscribes from the provider");
    });

    test("stop() ends waiting calls with UNAVAILABLE", async () => {
      const sms = await smsWith([new FakeSmsProvider()]);
      const a = await sms.getNumber(VK);
      const waiting = sms.getCode(a.id, 60);
      await eventually(() => sms.stats().waiters === 1);
      const ended = rejectsWith(waiting, "UNAVAILABLE", /stopping/);
      await sms.stop();
      await ended;
    });
  });
}
