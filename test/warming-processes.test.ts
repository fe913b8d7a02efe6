/**
 * Warming across real `conveer start` processes, through the real platform service, the sandbox
 * and local proxies:
 * - two replicas on one PostgreSQL share 500 tasks (started through them and a third, API-only
 *   replica): every planned action reaches the platform exactly once (the sandbox counts repeats
 *   of each action's idempotency key) and is recorded exactly once;
 * - a process SIGKILLed mid-run, then started again: every task completes, nothing lost, nothing
 *   counted twice (PGlite and PostgreSQL).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { openPglite } from "../src/store/pglite.ts";
import { openPostgres } from "../src/store/postgres.ts";
import type { Db } from "../src/store/db.ts";
import { terminate } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";
import { STORE_KINDS } from "./support/store.ts";
import { PER_TASK, checkBooks, setUp, startAll, waitEnded } from "./support/warming-system.ts";
import type { Setup } from "./support/warming-system.ts";

describe("two replicas on one PostgreSQL share 500 warming tasks", { skip: process.env.CONVEER_TEST_DATABASE_URL ? false : "needs CONVEER_TEST_DATABASE_URL (two processes share one PostgreSQL)" }, () => {
  let s: Setup;
  let db: Db;
  before(async () => {
    s = await setUp("postgres");
    db = openPostgres({ url: s.dbUrl, max: 2 });
  });
  after(async () => {
    await db?.close();
    await s?.close();
  });

  test("every planned action runs once and is recorded once; both replicas do part of the work; accounts end ACTIVE", { timeout: 240_000 }, async () => {
    // A third replica serves the API only (CONVEER_WARMING_WORKER=0): it starts tasks, runs none.
    const [a, b, api] = [await s.start("a"), await s.start("b"), await s.start("api", undefined, { CONVEER_WARMING_WORKER: "0" })];
    const accountIds = await s.accounts(a, 500, "pair");
    const t0 = performance.now();
    const ids = await startAll([a, b, api], accountIds);
    const tasks = await waitEnded(b.warming, ids, 180_000);
    const secs = (performance.now() - t0) / 1000;
    const { replays } = await checkBooks(db, s, tasks);
    assert.equal(replays, 0, "no planned action reached the platform twice");
    const [wa, wb] = [await a.workerActions(), await b.workerActions()];
    assert.deepEqual(await api.workerActions(), { claimed: 0, recorded: 0, dropped: 0, in_flight: 0 }, "the API-only replica ran no action");
    assert.equal(wa.dropped + wb.dropped, 0, "no claim was taken over");
    assert.ok(wa.recorded >= 300 && wb.recorded >= 300, `both replicas worked: ${JSON.stringify({ a: wa, b: wb })}`);
    assert.ok(wa.recorded + wb.recorded >= 500 * PER_TASK);
    const statuses = await Promise.all(accountIds.map((accountId) => a.accounts.getAccount({ accountId })));
    assert.deepEqual(
      statuses.filter((x) => x.status !== AccountStatus.ACTIVE).map((x) => AccountStatus[x.status]),
      [],
    );
    console.log(`# 500 tasks, ${500 * PER_TASK} actions in ${secs.toFixed(1)} s; replica a recorded ${wa.recorded}, b ${wb.recorded}`);
  });
});

for (const kind of STORE_KINDS) {
  describe(`conveer start SIGKILLed mid-warming, then started again (${kind})`, () => {
    let s: Setup;
    before(async () => {
      // Short leases: the restarted process takes the killed one's actions over after 1.5 s.
      s = await setUp(kind, { CONVEER_WARMING_LEASE_MS: "1500" });
      // Platform calls take 20-60 ms, so actions are always in flight when the kill lands.
      s.sandbox.setFaults({ latency: { minMs: 20, maxMs: 60 } });
    });
    after(async () => {
      await s?.close();
    });

    test("every task completes; nothing is lost or counted twice; the platform acted once per planned action", { timeout: 240_000 }, async () => {
      const dataDir = join(s.dir, "one");
      const first = await s.start("first", dataDir);
      const accountIds = await s.accounts(first, 200, kind);
      const ids = await startAll([first], accountIds);
      // Kill once about a third of the actions are recorded, with several in flight.
      let before: Record<string, number> = {};
      await eventually(
        async () => {
          before = await first.workerActions();
          return before.recorded >= 400 && before.in_flight >= 5;
        },
        60_000,
        "a third of the actions recorded and several in flight",
      );
      first.cli.proc.kill("SIGKILL");
      assert.equal(await first.cli.exited, "SIGKILL");

      const second = await s.start("second", dataDir);
      const tasks = await waitEnded(second.warming, ids, 180_000);
      // PGlite allows one process at a time: stop the server before reading its store.
      assert.equal((await terminate(second.cli)).code, 0);
      const db = kind === "postgres" ? openPostgres({ url: s.dbUrl, max: 2 }) : await openPglite(join(dataDir, "pgdata"));
      let books: { replays: number; reclaimed: number };
      try {
        books = await checkBooks(db, s, tasks);
      } finally {
        await db.close();
      }
      // Actions in flight at the kill were claimed again once their lease lapsed; the platform
      // answered the ones it had already done from their keys instead of acting twice. Only a
      // re-claimed action can reach the platform twice.
      assert.match(second.cli.stdout(), /took over warming actions whose lease lapsed/);
      assert.ok(books.reclaimed > 0 && books.reclaimed <= 256, `re-claimed actions: ${books.reclaimed} (at most the worker's concurrency)`);
      assert.ok(books.replays <= books.reclaimed, `repeats at the platform (${books.replays}) are at most the re-claimed actions (${books.reclaimed})`);
      console.log(
        `# ${kind}: killed with ${before.in_flight} in flight and ${before.recorded} recorded; ${books.reclaimed} actions were claimed again after the restart, ${books.replays} of them had reached the platform and were answered from their keys`,
      );
    });
  });
}
