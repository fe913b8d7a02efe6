import { test } from "node:test";
import assert from "node:assert/strict";
import { PGlite } from "@electric-sql/pglite";
import { operationOf, timedDb } from "./timed-db.ts";
import { wrapPglite } from "./pglite.ts";

test("operationOf names a statement by its verb and first table, never by its values", () => {
  const cases: [string, string][] = [
    ["SELECT platform, status, n FROM account_counts", "select account_counts"],
    ["select * from accounts where id = $1", "select accounts"],
    ["INSERT INTO accounts (id) VALUES ('x')", "insert accounts"],
    ["  UPDATE warming_tasks SET run_at = NULL WHERE id = 'abc'", "update warming_tasks"],
    ["DELETE FROM proxy_allocations WHERE account_id = $1", "delete proxy_allocations"],
    ["WITH c AS (SELECT id FROM warming_tasks) UPDATE warming_actions x SET status = 'running'", "update warming_actions"],
    ["WITH r AS (SELECT * FROM registrations) SELECT * FROM r", "select registrations"],
    // A row lock in a WITH is no write: the warming claim locks warming_due, then updates it.
    ["WITH c AS (SELECT ctid FROM warming_due WHERE lease_until IS NULL LIMIT $2 FOR UPDATE SKIP LOCKED), d AS (UPDATE warming_due d SET lease_until = now() FROM c WHERE d.ctid = c.ctid RETURNING 1) SELECT * FROM d", "update warming_due"],
    ["WITH c AS (SELECT id FROM proxies FOR NO KEY UPDATE SKIP LOCKED) SELECT * FROM c", "select proxies"],
    ["WITH v AS (SELECT 1) INSERT INTO account_counts (n) VALUES (1) ON CONFLICT (k) DO UPDATE SET n = 2", "insert account_counts"],
    ["-- a comment\nSELECT 1", "select"],
    ["SELECT pg_notify($1, $2)", "select"],
    ["BEGIN", "begin"],
    ["COMMIT", "commit"],
    ["SAVEPOINT item", "savepoint"],
    ["VACUUM accounts", "other"],
  ];
  for (const [sql, name] of cases) assert.equal(operationOf(sql), name, sql);
});

test("timedDb reports every query, in and out of transactions, and passes failures through", async () => {
  const seen: string[] = [];
  const db = timedDb(wrapPglite(await PGlite.create()), (op, s) => {
    assert.ok(s >= 0 && s < 60);
    seen.push(op);
  });
  try {
    await db.query("CREATE TABLE t (id int)");
    await db.transaction(async (tx) => {
      await tx.query("INSERT INTO t VALUES (1)");
      await tx.query("SELECT id FROM t");
    });
    await assert.rejects(db.query("SELECT * FROM missing_table"));
    assert.deepEqual(seen, ["create", "insert t", "select t", "select missing_table"]);
  } finally {
    await db.close();
  }
});
