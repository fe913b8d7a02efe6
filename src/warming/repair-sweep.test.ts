import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createIdGenerator } from "../store/ids.ts";
import { TaskStatus, insertTask, strandedTasks } from "./warming-store.ts";

/**
 * The repair's sweep (worker.ts repair): strandedTasks looks at one slice of the tasks by id per
 * call, and the calls in turn cover every task once per sweep, finding each stranded one (RUNNING,
 * actions left, no queue row) and no other.
 */
for (const kind of STORE_KINDS) {
  describe(`the stranded-task sweep on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    const stranded = new Set<string>();

    before(async () => {
      store = await freshStore(kind);
      const newId = createIdGenerator();
      const at = new Date("2030-01-07T00:00:00Z");
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const id = newId();
        ids.push(id);
        await insertTask(store.db, { id, account_id: newId(), platform: "vk", scenario_id: "s", duration_days: 1, total_days: 1, day1_at: at, started_at: at }, 3, at);
      }
      // All RUNNING with a queue row; then every 7th loses its row (stranded), and two more are not
      // stranded though rowless: one PAUSED, one with every action recorded.
      await store.db.query(`UPDATE warming_tasks SET status = ${TaskStatus.RUNNING}`);
      await store.db.query("INSERT INTO warming_due (task_id, seq, run_at) SELECT id, 0, $1 FROM warming_tasks", [at]);
      for (let i = 0; i < ids.length; i += 7) stranded.add(ids[i]);
      await store.db.query("DELETE FROM warming_due WHERE task_id = ANY($1::text[])", [[...stranded, ids[1], ids[2]]]);
      await store.db.query(`UPDATE warming_tasks SET status = ${TaskStatus.PAUSED} WHERE id = $1`, [ids[1]]);
      await store.db.query("UPDATE warming_tasks SET next_seq = total_actions WHERE id = $1", [ids[2]]);
    });
    after(async () => {
      await store.drop();
    });

    test("slices of 6 cover the 40 tasks in 7 calls and find exactly the stranded ones; the sweep then starts over", async () => {
      const found: string[] = [];
      let from = "";
      let calls = 0;
      do {
        const r = await strandedTasks(store.db, from, 6, 100);
        found.push(...r.tasks.map((t) => t.id));
        from = r.next;
        calls++;
      } while (from !== "" && calls < 100);
      assert.equal(calls, 7);
      assert.deepEqual(found.sort(), [...stranded].sort());
      const firstSlice = (await store.db.query<{ id: string }>("SELECT id FROM warming_tasks ORDER BY id LIMIT 6")).rows.map((r) => r.id);
      assert.deepEqual(
        (await strandedTasks(store.db, from, 6, 100)).tasks.map((t) => t.id),
        firstSlice.filter((id) => stranded.has(id)),
        "the next call starts from the first task again",
      );
    });

    test("a slice holding more stranded tasks than the limit goes on after the last one answered", async () => {
      // In the database's order of ids (its collation).
      const all = (await store.db.query<{ id: string }>("SELECT id FROM warming_tasks WHERE id = ANY($1::text[]) ORDER BY id", [[...stranded]])).rows.map((r) => r.id);
      const first = await strandedTasks(store.db, "", 1000, 2);
      assert.deepEqual(first.tasks.map((t) => t.id), all.slice(0, 2));
      assert.equal(first.next, all[1]);
      const rest = await strandedTasks(store.db, first.next, 1000, 100);
      assert.deepEqual(rest.tasks.map((t) => t.id), all.slice(2));
      assert.equal(rest.next, "", "the slice reached the end");
    });
  });
}
