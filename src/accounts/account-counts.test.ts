import { test } from "node:test";
import assert from "node:assert/strict";
import { freshStore } from "../../test/support/store.ts";

const ACTIVE = 2;
const WARMING = 3;

// Warming moves accounts ACTIVE→WARMING (a task starts) and WARMING→ACTIVE (one ends) at once on
// several hosts. account_counts' trigger used to lock the two counter rows in opposite orders for
// the two directions and deadlocked (40P01, INTERNAL to the caller): seen in the cluster bench.
test("status changes in both directions at once never deadlock on account_counts, and the counts stay right (PostgreSQL)", { skip: process.env.CONVEER_TEST_DATABASE_URL ? false : "needs CONVEER_TEST_DATABASE_URL (concurrent transactions)" }, async () => {
  const s = await freshStore("postgres");
  try {
    const n = 40;
    await s.db.query(
      `INSERT INTO accounts (id, platform, login, status, secrets, key_id)
       SELECT lpad(to_hex(i), 24, '0'), 'vk', 'c' || i, CASE WHEN i % 2 = 0 THEN ${ACTIVE} ELSE ${WARMING} END, '', 'k' FROM generate_series(1, $1) AS i`,
      [n],
    );
    const errors: string[] = [];
    // Each flip holds its transaction open a moment after the status UPDATE, as a handler that
    // writes history and events after it does, so flips in opposite directions overlap.
    const flip = async (i: number, round: number) => {
      const id = i.toString(16).padStart(24, "0");
      const to = (i + round) % 2 === 0 ? WARMING : ACTIVE;
      try {
        await s.db.transaction(async (tx) => {
          await tx.query("UPDATE accounts SET status = $2, updated_at = now() WHERE id = $1", [id, to]);
          await tx.query("SELECT pg_sleep(0.005)");
          await tx.query("UPDATE accounts SET labels = '{\"touched\": \"yes\"}' WHERE id = $1", [id]);
        });
      } catch (err) {
        errors.push(String(err));
      }
    };
    for (let round = 0; round < 6; round++) await Promise.all(Array.from({ length: n }, (_, k) => flip(k + 1, round)));
    assert.deepEqual(errors.slice(0, 3), [], `${errors.length} of ${6 * n} status changes failed`);
    const counts = await s.db.query<{ status: number; n: string; real: string }>(
      "SELECT c.status, c.n, (SELECT count(*) FROM accounts a WHERE a.platform = c.platform AND a.status = c.status) AS real FROM account_counts c WHERE c.platform = 'vk' ORDER BY c.status",
    );
    for (const r of counts.rows) assert.equal(String(r.n), String(r.real), `status ${r.status}`);
  } finally {
    await s.drop();
  }
});
