/**
 * copyStore pages each table by its rows' physical positions (ctid): every row is copied once,
 * however many pages the table spans. (The position was once sorted as text, "(100,1)" before
 * "(50,10)": past ten pages rows were skipped or copied twice; `test/backup.test.ts` caught it with
 * 1,400 accounts.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PGlite } from "@electric-sql/pglite";
import { migrate } from "./migrate.ts";
import { copyStore } from "./migrate-store.ts";
import { wrapPglite } from "./pglite.ts";

test("a table of 3,000 rows over a hundred pages is copied whole, each row once", async () => {
  const [source, target] = [wrapPglite(await PGlite.create()), wrapPglite(await PGlite.create())];
  try {
    await migrate(source);
    await migrate(target);
    await source.query(
      "INSERT INTO accounts (id, platform, login, status, secrets, key_id) SELECT lpad(to_hex(g), 24, '0'), 'vk', 'login' || g, 2, repeat('x', 200), 'k' FROM generate_series(1, 3000) g",
    );
    const pages = await source.query<{ n: number }>("SELECT count(DISTINCT (ctid::text::point)[0])::int AS n FROM accounts");
    assert.ok(pages.rows[0].n > 20, `the rows span ${pages.rows[0].n} pages`);
    const counts = await copyStore(source, target);
    assert.deepEqual(counts.find((c) => c.table === "accounts"), { table: "accounts", source: 3000, target: 3000 });
    const ids = async (db: typeof source) => (await db.query<{ id: string }>("SELECT id FROM accounts ORDER BY id")).rows.map((r) => r.id);
    assert.deepEqual(await ids(target), await ids(source));
  } finally {
    await source.close();
    await target.close();
  }
});
