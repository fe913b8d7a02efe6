/**
 * Scaled scenario time (CONVEER_TIME_SCALE) goes on across a restart: a real `conveer start` at a
 * scenario day per 4 real seconds is stopped mid-scenario and started again on the same store;
 * the task's day never goes back and the task completes on plan. Before the clock was anchored in
 * the store, the restarted process began scaled time again from its own start: the task fell
 * back to day 1 and stood still until real time caught up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import { terminate } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";
import { STORE_KINDS } from "./support/store.ts";
import { PER_TASK, setUp, startAll, waitEnded } from "./support/warming-system.ts";
import type { Setup } from "./support/warming-system.ts";

for (const kind of STORE_KINDS) {
  describe(`scaled warming time across a restart (${kind})`, () => {
    let s: Setup;
    before(async () => {
      s = await setUp(kind);
    });
    after(async () => {
      await s?.close();
    });

    test("the task's day never goes back and the task completes on plan", { timeout: 120_000 }, async () => {
      const dataDir = join(s.dir, "one");
      const first = await s.start("first", dataDir);
      const [accountId] = await s.accounts(first, 1, `clock_${kind}`);
      const [taskId] = await startAll([first], [accountId]);
      await eventually(async () => (await first.warming.getWarmingStatus({ taskId })).currentDay === 2, 30_000, "day 2 of 2");
      const was = await first.warming.getWarmingStatus({ taskId });
      assert.equal((await terminate(first.cli)).code, 0);

      const second = await s.start("second", dataDir);
      const now = await second.warming.getWarmingStatus({ taskId });
      assert.ok(now.currentDay >= was.currentDay, `day went back from ${was.currentDay} to ${now.currentDay} after the restart`);
      // Two scenario days take 8 real seconds at this scale: on plan, the rest ends within a few more.
      const [done] = await waitEnded(second.warming, [taskId], 15_000);
      assert.equal(WarmingStatus[done.status], "COMPLETED", done.error);
      assert.deepEqual([done.actionsCompleted, done.currentDay], [PER_TASK, 2]);
    });
  });
}
