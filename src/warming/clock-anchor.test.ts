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
      // The new scale takes over somewhere inside the call, so its time lies between the running
      // clock's before and after the call, however long the call takes on a loaded machine.
      const t0 = a.now();
      const slower = await anchoredClock(db, 10, log);
      const [s, t1] = [slower.now(), a.now()];
      assert.ok(s >= t0 - scale * 20 && s <= t1 + scale * 20, `a changed scale keeps the scenario time it had reached (${s - t0} ms past it, the running clock ${t1 - s} ms further)`);
      const [s0, r0] = [slower.now(), performance.now()];
      await sleep(100);
      const [advanced, real] = [slower.now() - s0, performance.now() - r0];
      assert.ok(Math.abs(advanced - 10 * real) < 10 * 20, `then runs at the new speed (${advanced} scenario ms in ${real.toFixed(0)} real ms)`);
    });

    test("a host whose clock is minutes ahead (or behind) keeps the database's time, at scale 1 and scaled, and says so", async () => {
      const own = await freshStore(kind);
      try {
        const db = own.db;
        const ahead = () => Date.now() + 5 * 60_000;
        const behind = () => Date.now() - 3 * 60_000;
        const warnings: string[] = [];
        const spy = pino({ level: "warn" }, { write: (line: string) => void warnings.push(line) });
        const real = await anchoredClock(db, 1, spy, ahead);
        assert.ok(Math.abs(real.now() - Date.now()) < 200, `scale 1: off by ${real.now() - Date.now()} ms`);
        assert.match(warnings.join(""), /differs from the database's/);
        const scale = 1000;
        const [right, fast, slow] = [await anchoredClock(db, scale, log), await anchoredClock(db, scale, log, ahead), await anchoredClock(db, scale, log, behind)];
        for (const skewed of [fast, slow]) assert.ok(Math.abs(skewed.now() - right.now()) < scale * 200, `scaled: a skewed host is off by ${skewed.now() - right.now()} scenario ms`);
      } finally {
        await own.drop();
      }
    });
  });
}
