import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { anchoredClock } from "./clock-anchor.ts";

const log = pino({ level: "silent" });

for (const kind of STORE_KINDS) {
  describe(`the scenario clock's anchor (${kind})`, async () => {
    const store = await freshStore(kind);
    after(() => store.drop());
    const { db } = store;

    test("real time with no anchor stays real time and writes nothing", async () => {
      const c = await anchoredClock(db, 1, log);
      assert.ok(Math.abs(c.now() - Date.now()) < 50);
      assert.equal((await db.query("SELECT 1 FROM warming_clock")).rowCount, 0);
    });

    test("a clock made later (a restart, another replica) goes on from the same scaled time; a new scale goes on from where it was", async () => {
      const scale = 1000;
      const [a, b] = await Promise.all([anchoredClock(db, scale, log), anchoredClock(db, scale, log)]);
      assert.ok(Math.abs(a.now() - b.now()) < scale * 20, "replicas starting at once share one anchor");
      await sleep(100);
      const restarted = await anchoredClock(db, scale, log);
      const gap = Math.abs(restarted.now() - a.now());
      assert.ok(gap < scale * 20, `the restarted clock agrees with the running one (off by ${gap} scenario ms; a fresh clock would be ~100 s behind)`);
      const t0 = a.now();
      const slower = await anchoredClock(db, 10, log);
      assert.ok(Math.abs(slower.now() - t0) < scale * 20, "a changed scale keeps the scenario time it had reached");
      const s0 = slower.now();
      await sleep(100);
      const advanced = slower.now() - s0;
      assert.ok(advanced >= 900 && advanced < 5000, `then runs at the new speed (${advanced} scenario ms in 100 real ms)`);
    });
  });
}
