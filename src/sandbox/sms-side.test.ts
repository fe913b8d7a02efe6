import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createSandboxContext } from "./sandbox-context.ts";
import { saveNow } from "./sandbox-world.ts";
import { SandboxError } from "./sandbox-error.ts";
import type { SandboxErrorCode } from "./sandbox-error.ts";
import * as smsSide from "./sms-side.ts";

function world(sms: { startBalance?: number; numbersPerPool?: number } = {}) {
  const clock = { t: 1_000_000 };
  const ctx = createSandboxContext({ now: () => clock.t, sms });
  return { ctx, clock };
}
const refused = (code: SandboxErrorCode) => (err: unknown) => err instanceof SandboxError && err.code === code;

describe("sandbox SMS side rules", () => {
  test("pools: one per service and country, none for what is not offered", () => {
    const { ctx } = world();
    assert.deepEqual(smsSide.poolPhones({ ...ctx.sms, numbersPerPool: 2 }, "telegram", "kz"), ["+7991100001", "+7991100002"]);
    assert.deepEqual(smsSide.poolPhones(ctx.sms, "vk", "fr"), []);
    assert.deepEqual(smsSide.poolPhones(ctx.sms, "icq", "ru"), []);
  });

  test("renting charges in kopecks, refuses unknown services, empty pools and a short balance", () => {
    const { ctx } = world({ startBalance: 25, numbersPerPool: 3 });
    assert.throws(() => smsSide.rent(ctx, { service: "icq" }), refused("unknown_service"));
    assert.throws(() => smsSide.rent(ctx, {}), refused("invalid"));
    const a = smsSide.rent(ctx, { service: "vk", country: "RU" });
    assert.equal(a.price, 10);
    assert.equal(ctx.world.sms.rentals[a.ref].country, "ru");
    smsSide.rent(ctx, { service: "vk" });
    assert.throws(() => smsSide.rent(ctx, { service: "vk" }), refused("insufficient_balance"));
    assert.equal(smsSide.topUp(ctx, 0.5), 5.5);
    assert.throws(() => smsSide.topUp(ctx, -1), refused("invalid"));
    assert.equal(smsSide.topUp(ctx, 100), 105.5);
    smsSide.rent(ctx, { service: "vk" });
    assert.throws(() => smsSide.rent(ctx, { service: "vk" }), refused("no_numbers"));
    assert.deepEqual(smsSide.balance(ctx), { balance: 95.5, currency: "RUB" });
  });

  test("cancel refunds only without a code; finish never; expiry refunds when no code came", () => {
    const { ctx, clock } = world();
    const quiet = smsSide.rent(ctx, { service: "vk" });
    const texted = smsSide.rent(ctx, { service: "vk" });
    const done = smsSide.rent(ctx, { service: "mail" });
    const expiring = smsSide.rent(ctx, { service: "max" });
    assert.equal(smsSide.balance(ctx).balance, 960);
    const e = smsSide.sendSms(ctx, "vk", texted.phone, "code 123456");
    assert.equal(e?.code, "123456");
    assert.equal(smsSide.sendSms(ctx, "telegram", texted.phone, "code 1"), null, "the number is rented for vk, not telegram");
    assert.deepEqual(smsSide.cancel(ctx, quiet.ref), { refunded: true, status: "cancelled" });
    assert.deepEqual(smsSide.cancel(ctx, texted.ref), { refunded: false, status: "cancelled" });
    assert.deepEqual(smsSide.finish(ctx, done.ref), { status: "finished" });
    assert.deepEqual(smsSide.cancel(ctx, done.ref), { refunded: false, status: "finished" });
    assert.deepEqual(smsSide.cancel(ctx, quiet.ref), { refunded: true, status: "cancelled" }, "a second cancel changes nothing");
    assert.equal(smsSide.balance(ctx).balance, 970);
    clock.t += ctx.sms.rentalTtlMs;
    assert.equal(smsSide.rental(ctx, expiring.ref).status, "expired");
    assert.equal(smsSide.balance(ctx).balance, 980);
    assert.throws(() => smsSide.rental(ctx, "hasOwnProperty"), refused("not_found"));
  });

  test("delivered SMS reach the listeners and only the last thousand are kept", () => {
    const { ctx } = world();
    const { phone } = smsSide.rent(ctx, { service: "vk" });
    const heard: number[] = [];
    ctx.smsListeners.add((e) => heard.push(e.id));
    for (let i = 0; i < 1005; i++) smsSide.sendSms(ctx, "vk", phone, `n ${i}`);
    assert.equal(heard.length, 1005);
    assert.equal(ctx.world.sms.events.length, 1000);
    assert.equal(ctx.world.sms.events[0].id, 6);
    assert.equal(ctx.world.sms.rentals[Object.keys(ctx.world.sms.rentals)[0]].codes, 1005);
  });

  test("an ended rental frees its number (cancel, finish, expiry), and a reloaded world keeps its active rentals", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "conveer-sms-side-"));
    try {
      const clock = { t: 1_000_000 };
      const opts = { now: () => clock.t, sms: { numbersPerPool: 2, startBalance: 1000 }, dataFile: path.join(dir, "sandbox.json") };
      const ctx = createSandboxContext(opts);
      const a = smsSide.rent(ctx, { service: "vk" });
      const b = smsSide.rent(ctx, { service: "vk" });
      assert.throws(() => smsSide.rent(ctx, { service: "vk" }), refused("no_numbers"));
      smsSide.cancel(ctx, a.ref);
      assert.equal(smsSide.sendSms(ctx, "vk", a.phone, "code 111111"), null, "a cancelled rental takes no SMS");
      const c = smsSide.rent(ctx, { service: "vk" });
      assert.equal(c.phone, a.phone, "the cancelled rental's number is free again");
      smsSide.finish(ctx, b.ref);
      const d = smsSide.rent(ctx, { service: "vk" });
      assert.equal(d.phone, b.phone, "the finished rental's number is free again");
      assert.equal(smsSide.sendSms(ctx, "vk", d.phone, "code 222222")?.ref, d.ref, "an SMS reaches the number's current rental");
      saveNow(ctx);
      clearTimeout(ctx.saveTimer);

      // Reloaded from its file: c and d are still active, so both numbers are busy, and they take SMS and expire.
      const again = createSandboxContext(opts);
      assert.throws(() => smsSide.rent(again, { service: "vk" }), refused("no_numbers"));
      assert.equal(smsSide.sendSms(again, "vk", c.phone, "code 333333")?.ref, c.ref);
      clock.t += again.sms.rentalTtlMs;
      assert.equal(smsSide.rental(again, c.ref).status, "expired");
      assert.equal(smsSide.rental(again, d.ref).status, "expired");
      assert.equal(smsSide.sendSms(again, "vk", c.phone, "code 444444"), null, "an expired rental takes no SMS");
      assert.equal(smsSide.rent(again, { service: "vk" }).phone, a.phone, "expired rentals free their numbers");
      clearTimeout(again.saveTimer);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
