import { test } from "node:test";
import assert from "node:assert/strict";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import * as store from "./registration-store.ts";

for (const kind of STORE_KINDS) {
  test(`a registration taken over after its lease lapsed cannot be moved, renewed or finished by its first runner (${kind})`, async () => {
    const s = await freshStore(kind);
    try {
      // A lease already lapsed, as for a runner cut off from the store.
      await store.insertRegistration(s.db, "0123456789abcdef01234567", "vk", "cut_off", -1000);
      const first = { id: "0123456789abcdef01234567", claim: store.FIRST_CLAIM };
      const [taken] = await store.claimAbandoned(s.db, 10, 60_000);
      assert.equal(taken.claim, store.FIRST_CLAIM + 1, "a take-over bumps the claim");

      // One statement moves several registrations: each item answers for its own claim only.
      await store.insertRegistration(s.db, "0123456789abcdef01234568", "vk", "live", 60_000);
      const live = { id: "0123456789abcdef01234568", claim: store.FIRST_CLAIM };
      const items: store.Advance[] = [
        { c: first, step: "confirm", fields: { signup_id: "late" }, leaseMs: 60_000 },
        { c: live, step: "sign_up", fields: { account_id: "acc-live", proxy_id: "proxy-live" }, leaseMs: 60_000 },
      ];
      const moved = await store.advance(s.db, items);
      assert.deepEqual(items.map((x) => moved.get(x)), [false, true]);
      const liveRow = await store.getRegistration(s.db, live.id);
      assert.deepEqual([liveRow?.step, liveRow?.account_id, liveRow?.proxy_id, liveRow?.signup_id], ["sign_up", "acc-live", "proxy-live", ""]);
      // A later step keeps what earlier steps stored (absent fields are left as they are).
      await store.advance(s.db, [{ c: live, step: "wait_code", fields: { signup_id: "su-1" }, leaseMs: 60_000 }]);
      const again = await store.getRegistration(s.db, live.id);
      assert.deepEqual([again?.step, again?.account_id, again?.signup_id], ["wait_code", "acc-live", "su-1"]);
      assert.equal(await store.renewLease(s.db, first, 60_000), false);
      assert.equal(await store.finishRegistration(s.db, first, "succeeded"), false);
      assert.equal(await store.finishRegistration(s.db, taken, "failed", "wait_code", "interrupted"), true);
      assert.equal(await store.finishRegistration(s.db, taken, "succeeded"), false, "a finished registration stays finished");

      const row = await store.getRegistration(s.db, first.id);
      assert.deepEqual([row?.status, row?.failed_step, row?.signup_id], ["failed", "wait_code", ""]);

      // A success ends through advance too (in the same statement as other moves); a taken-over or finished one does not.
      const ends: store.Advance[] = [
        { c: live, step: "done", fields: {}, leaseMs: 60_000, status: "succeeded" },
        { c: first, step: "done", fields: {}, leaseMs: 60_000, status: "succeeded" },
      ];
      const ended = await store.advance(s.db, ends);
      assert.deepEqual(ends.map((x) => ended.get(x)), [true, false]);
      const done = await store.getRegistration(s.db, live.id);
      assert.deepEqual([done?.status, done?.step, done?.account_id, done?.signup_id], ["succeeded", "done", "acc-live", "su-1"]);
      assert.deepEqual([(await store.getRegistration(s.db, first.id))?.status], ["failed"]);
      const late = await store.advance(s.db, [{ c: live, step: "store", fields: {}, leaseMs: 60_000 }]);
      assert.deepEqual([...late.values()], [false], "a finished registration is not moved again");
    } finally {
      await s.drop();
    }
  });
}
