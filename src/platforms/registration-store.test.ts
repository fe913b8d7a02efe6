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

      assert.equal(await store.advance(s.db, first, "confirm", { signup_id: "late" }, 60_000), false);
      assert.equal(await store.renewLease(s.db, first, 60_000), false);
      assert.equal(await store.finishRegistration(s.db, first, "succeeded"), false);
      assert.equal(await store.finishRegistration(s.db, taken, "failed", "wait_code", "interrupted"), true);
      assert.equal(await store.finishRegistration(s.db, taken, "succeeded"), false, "a finished registration stays finished");

      const row = await store.getRegistration(s.db, first.id);
      assert.deepEqual([row?.status, row?.failed_step, row?.signup_id], ["failed", "wait_code", ""]);
    } finally {
      await s.drop();
    }
  });
}
