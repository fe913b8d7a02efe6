import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { pino } from "pino";
import type { Db, Queryable } from "../store/db.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createEventHub } from "./events.ts";
import { parseSnapshot, suspectsRunning } from "./event-order.ts";
import type { EventHub } from "./events.ts";
import { insertEvents } from "./warming-store.ts";
import type { EventRow } from "./warming-store.ts";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const AT = new Date("2025-03-10T06:00:00Z");

/** Writes one event the way every writer does: something else first (an xid), then the event. */
async function writeEvent(q: Queryable, task: string): Promise<number> {
  await q.query("SELECT pg_current_xact_id()");
  const [id] = await insertEvents(q, [{ task_id: task, event_type: "status_changed", at: AT, data: { n: task } }]);
  return id;
}

/** Collects what a subscription yields into `into` until the signal aborts. */
function collect(hub: EventHub, into: EventRow[], signal: AbortSignal, afterId?: number): Promise<void> {
  return (async () => {
    for await (const e of hub.subscribe({ afterId }, signal)) into.push(e);
  })();
}

async function until(fn: () => boolean, ms = 5000, what = ""): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`condition not met in time: ${what}`);
    await sleep(5);
  }
}

test("snapshots: parsed; suspects are the in-progress list and [xmax, witness)", () => {
  assert.deepEqual(parseSnapshot("10:20:12,15"), { xmax: 20n, xip: [12n, 15n] });
  assert.deepEqual(parseSnapshot("10:10:"), { xmax: 10n, xip: [] });
  const s1 = parseSnapshot("10:20:12,15");
  assert.equal(suspectsRunning({ snap: s1 }, parseSnapshot("30:30:")), true, "no witness yet: assume running");
  const sus = { snap: s1, witness: 25n };
  assert.equal(suspectsRunning(sus, parseSnapshot("12:30:12")), true, "a listed one still runs");
  assert.equal(suspectsRunning(sus, parseSnapshot("21:30:21")), true, "an unlisted one at or above xmax, below the witness, runs");
  assert.equal(suspectsRunning(sus, parseSnapshot("26:30:26")), false, "only newer ones run");
  assert.equal(suspectsRunning(sus, parseSnapshot("30:30:")), false);
  assert.equal(suspectsRunning(sus, parseSnapshot("20:25:")), true, "the witness itself not yet completed: the snapshot predates it");
});

for (const kind of STORE_KINDS) {
  describe(`event hub on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    let hub: EventHub;
    beforeEach(async () => {
      store = await freshStore(kind);
      db = store.db;
      hub = createEventHub({ db, log, options: { pollIntervalMs: 50, gapRecheckMs: 10 } });
      await hub.start();
    });
    afterEach(async () => {
      await hub.stop();
      await store.drop();
    });

    test("a rolled-back writer leaves a gap that is skipped at once; replay after an id returns the rest", async () => {
      const got: EventRow[] = [];
      const sub = new AbortController();
      const done = collect(hub, got, sub.signal);
      await sleep(20);
      const a = await db.transaction((tx) => writeEvent(tx, "a"));
      await assert.rejects(
        db.transaction(async (tx) => {
          await writeEvent(tx, "rolled-back");
          throw new Error("roll back");
        }),
      );
      const c = await db.transaction((tx) => writeEvent(tx, "c"));
      await until(() => got.length === 2);
      assert.deepEqual(
        got.map((e) => e.id),
        [a, c],
      );
      assert.ok(c > a + 1, "the rolled-back id is a real gap");
      sub.abort();
      await done;
      const replay: EventRow[] = [];
      const r = new AbortController();
      const d2 = collect(hub, replay, r.signal, a);
      await until(() => replay.length === 1);
      r.abort();
      await d2;
      assert.deepEqual(
        replay.map((e) => e.data.n),
        ["c"],
      );
    });

    if (kind === "postgres") {
      test("out-of-order commits: a later id committed first waits for the earlier one; both arrive once, in order", async () => {
        const got: EventRow[] = [];
        const sub = new AbortController();
        const done = collect(hub, got, sub.signal);
        await sleep(20);
        const A = new pg.Client({ connectionString: store.url });
        const B = new pg.Client({ connectionString: store.url });
        await A.connect();
        await B.connect();
        try {
          await A.query("BEGIN");
          const idA = await writeEvent(A, "A");
          await B.query("BEGIN");
          const idB = await writeEvent(B, "B");
          assert.equal(idB, idA + 1);
          await B.query("COMMIT");
          await sleep(150);
          assert.equal(got.length, 0, "B is not delivered while A, holding a smaller id, is in flight");
          await A.query("COMMIT");
          await until(() => got.length === 2, 5000, `A+B: ${JSON.stringify(got.map((e) => e.id))} ${idA} ${idB}`);
          assert.deepEqual(
            got.map((e) => e.id),
            [idA, idB],
          );

          // A writer that rolls back after a later one committed: skipped as soon as it ends.
          await A.query("BEGIN");
          const idC = await writeEvent(A, "C");
          await B.query("BEGIN");
          const idD = await writeEvent(B, "D");
          await B.query("COMMIT");
          await sleep(100);
          assert.equal(got.length, 2);
          await A.query("ROLLBACK");
          await until(() => got.length === 3, 5000, `rollback: ${JSON.stringify(got.map((e) => e.id))}`);
          assert.deepEqual(got[2].id, idD);
          assert.ok(idD > idC);

          // Many concurrent writers: every committed event once, in id order.
          const clients = await Promise.all(
            Array.from({ length: 8 }, async () => {
              const c = new pg.Client({ connectionString: store.url });
              await c.connect();
              return c;
            }),
          );
          const written: number[] = [];
          await Promise.all(
            clients.map(async (c, i) => {
              for (let k = 0; k < 60; k++) {
                await c.query("BEGIN");
                const id = await writeEvent(c, `w${i}`);
                // Mostly short; now and then held well past the hub's re-check, so gaps linger and need a witness.
                await sleep(k % 10 === 0 ? 30 + Math.random() * 40 : Math.random() * 4);
                if ((i + k) % 7 === 0) await c.query("ROLLBACK");
                else {
                  await c.query("COMMIT");
                  written.push(id);
                }
              }
            }),
          );
          for (const c of clients) await c.end();
          await until(() => got.length === 3 + written.length, 10_000, `all ${written.length} committed events`);
          const ids = got.slice(3).map((e) => e.id);
          assert.deepEqual(
            ids,
            [...written].sort((x, y) => x - y),
          );
        } finally {
          await A.end();
          await B.end();
          sub.abort();
          await done;
        }
      });
    }
  });
}
