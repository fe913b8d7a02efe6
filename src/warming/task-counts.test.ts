import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createIdGenerator } from "../store/ids.ts";
import { TaskStatus, insertTask, taskCounts } from "./warming-store.ts";

/**
 * warming_task_counts (the conveer_warming_tasks gauge) is kept by a statement trigger from its
 * transition tables (migration 020): exact whatever one statement does to how many tasks at once.
 */
for (const kind of STORE_KINDS) {
  describe(`warming_task_counts on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    const ids: string[] = [];

    /** The counts as kept, beside the counts of the rows themselves (statuses with none left out). */
    async function both(): Promise<{ kept: Record<number, number>; actual: Record<number, number> }> {
      const kept = Object.fromEntries((await taskCounts(store.db)).filter((r) => Number(r.n) !== 0).map((r) => [r.status, Number(r.n)]));
      const rows = await store.db.query<{ status: number; n: number }>("SELECT status, count(*)::int AS n FROM warming_tasks GROUP BY status");
      return { kept, actual: Object.fromEntries(rows.rows.map((r) => [r.status, r.n])) };
    }

    before(async () => {
      store = await freshStore(kind);
      const newId = createIdGenerator();
      const at = new Date("2030-01-07T00:00:00Z");
      for (let i = 0; i < 300; i++) {
        const id = newId();
        ids.push(id);
        await insertTask(store.db, { id, account_id: newId(), platform: "vk", scenario_id: "s", duration_days: 1, total_days: 1, day1_at: at, started_at: at }, 3, at);
      }
    });
    after(async () => {
      await store.drop();
    });

    test("inserted tasks count as PENDING", async () => {
      const { kept, actual } = await both();
      assert.deepEqual(kept, { [TaskStatus.PENDING]: 300 });
      assert.deepEqual(kept, actual);
    });

    test("one statement moving tasks between several statuses, and leaving others, counts each move once", async () => {
      await store.db.query(`UPDATE warming_tasks SET status = ${TaskStatus.RUNNING} WHERE id = ANY($1::text[])`, [ids.slice(0, 250)]);
      // 128 ended at once (a recording batch), 10 paused, 2 resumed, the rest touched without a status change.
      await store.db.query(
        `UPDATE warming_tasks SET progress = progress + 1, status = CASE
           WHEN id = ANY($1::text[]) THEN ${TaskStatus.COMPLETED}
           WHEN id = ANY($2::text[]) THEN ${TaskStatus.PAUSED}
           WHEN id = ANY($3::text[]) THEN ${TaskStatus.RUNNING}
           ELSE status END`,
        [ids.slice(0, 128), ids.slice(128, 138), ids.slice(250, 252)],
      );
      const { kept, actual } = await both();
      assert.deepEqual(kept, { [TaskStatus.PENDING]: 48, [TaskStatus.RUNNING]: 114, [TaskStatus.PAUSED]: 10, [TaskStatus.COMPLETED]: 128 });
      assert.deepEqual(kept, actual);
    });

    test("a statement that moves no status leaves the counts as they are; so does one that moves and moves back", async () => {
      const before = await both();
      await store.db.query("UPDATE warming_tasks SET progress = progress + 1");
      await store.db.query(`UPDATE warming_tasks SET status = CASE WHEN status = ${TaskStatus.PAUSED} THEN ${TaskStatus.RUNNING} ELSE status END WHERE status IN (${TaskStatus.PAUSED}, ${TaskStatus.RUNNING})`);
      await store.db.query(`UPDATE warming_tasks SET status = ${TaskStatus.PAUSED} WHERE id = ANY($1::text[])`, [ids.slice(128, 138)]);
      const after = await both();
      assert.deepEqual(after.kept, before.kept);
      assert.deepEqual(after.kept, after.actual);
    });

    test("deleted tasks leave the counts", async () => {
      await store.db.query("DELETE FROM warming_tasks WHERE id = ANY($1::text[])", [ids.slice(0, 10)]);
      const { kept, actual } = await both();
      assert.deepEqual(kept, actual);
      assert.equal(kept[TaskStatus.COMPLETED], 118);
    });
  });
}
