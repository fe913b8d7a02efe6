/**
 * AllocateProxy and ReleaseProxy racing from two replicas: two proxy pools (each with its own
 * PostgreSQL connection pool, as two processes would have) over one database, against proxies of
 * small capacity. Nothing serializes the calls but the database: capacity, one proxy per account
 * and the `allocated` counters must hold exactly. PostgreSQL only: PGlite runs one statement at a
 * time, so nothing there can race.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { create } from "@bufbuild/protobuf";
import { AccountSchema, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { AppError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openPostgres } from "../store/postgres.ts";
import { createVault } from "../vault/vault.ts";
import { freshStore } from "../../test/support/store.ts";
import { createProxies } from "./proxies.ts";
import type { Proxies } from "./proxies.ts";

const newId = createIdGenerator();

/** What the database holds, checked against the pool's rules; returns the allocations by account. */
async function checkPool(db: Db): Promise<Map<string, string>> {
  const over = await db.query("SELECT id, allocated, capacity FROM proxies WHERE allocated > capacity OR allocated < 0");
  assert.deepEqual(over.rows, [], "a proxy is over its capacity (or below zero)");
  const drift = await db.query(
    `SELECT p.id, p.allocated, count(a.account_id)::int AS held FROM proxies p LEFT JOIN proxy_allocations a ON a.proxy_id = p.id
     GROUP BY p.id, p.allocated HAVING p.allocated <> count(a.account_id)`,
  );
  assert.deepEqual(drift.rows, [], "a proxy's allocated counter disagrees with its allocations");
  const counts = await db.query<{ counted: number; held: number }>(
    "SELECT (SELECT coalesce(sum(allocated), 0)::int FROM proxy_counts) AS counted, (SELECT count(*)::int FROM proxy_allocations) AS held",
  );
  assert.equal(counts.rows[0].counted, counts.rows[0].held, "proxy_counts (the metrics' counters) disagree with the allocations");
  const held = await db.query<{ account_id: string; proxy_id: string }>("SELECT account_id, proxy_id FROM proxy_allocations");
  return new Map(held.rows.map((r) => [r.account_id, r.proxy_id]));
}

/** The code of a failed call ("RESOURCE_EXHAUSTED", …), or the error itself when it is not an expected one. */
function codeOf(err: unknown): string {
  if (err instanceof AppError) return err.code;
  throw err;
}

const url = process.env.CONVEER_TEST_DATABASE_URL;

describe("allocation races between two replicas on PostgreSQL", { skip: url ? false : "CONVEER_TEST_DATABASE_URL is not set: the race needs a PostgreSQL server shared by two connection pools" }, () => {
  let store: Awaited<ReturnType<typeof freshStore>>;
  let second: Db;
  let replicas: Proxies[];

  before(async () => {
    store = await freshStore("postgres");
    second = openPostgres({ url: store.url, max: 10 });
    const master = randomBytes(32);
    const log = pino({ level: "silent" });
    // Every account is live: AccountService is not what is under test.
    const accounts = { getAccount: async ({ accountId }: { accountId: string }) => create(AccountSchema, { id: accountId, status: AccountStatus.ACTIVE }) };
    const options = { leaseMs: 3_600_000, checkTarget: "127.0.0.1:1", allowedTargets: [], policy: { allowPrivate: true, store: [] }, checkTimeoutMs: 1000, failureThreshold: 3 };
    replicas = await Promise.all(
      [store.db, second].map(async (db) => createProxies({ db, vault: await createVault(db, master, newId), newId, accounts, log, options })),
    );
  });

  after(async () => {
    await second?.close();
    await store?.drop();
  });

  /** Adds `n` proxies of capacity `capacity` straight into the pool; returns their ids. */
  async function addProxies(n: number, capacity: number): Promise<string[]> {
    const ids = Array.from({ length: n }, () => newId());
    await store.db.query("INSERT INTO proxies (id, protocol, host, port, capacity) SELECT id, 'http', '198.18.0.1', 20000 + n, $2 FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)", [ids, capacity]);
    return ids;
  }

  test("360 allocations (3 per account) over 20 proxies of capacity 2: exactly 40 accounts win, each with one proxy, none over capacity", async () => {
    await addProxies(20, 2);
    const accounts = Array.from({ length: 120 }, () => newId());
    const calls = accounts.flatMap((id, i) => [0, 1, 2].map((k) => ({ id, replica: replicas[(i + k) % 2] })));
    const answers = await Promise.all(
      calls.map(({ id, replica }) =>
        replica.allocate(id, "vk", "", "").then(
          (p) => ({ id, proxyId: p.id }),
          (err: unknown) => ({ id, code: codeOf(err) }),
        ),
      ),
    );
    const failures = new Set(answers.flatMap((a) => ("code" in a ? [a.code] : [])));
    assert.deepEqual([...failures], ["RESOURCE_EXHAUSTED"]);
    const held = await checkPool(store.db);
    assert.equal(held.size, 40, "every slot is taken, and no more");
    // Each account's answers agree with each other and with what it holds.
    for (const a of answers) if ("proxyId" in a) assert.equal(held.get(a.id), a.proxyId, `account ${a.id} was answered a proxy it does not hold`);
  });

  test("an account marked DELETED after AccountService answered ACTIVE gets no slot: a mark in flight makes the allocation wait, then refuse, on both paths", async () => {
    // The stand-in AccountService answers ACTIVE for every id: that is the read an AllocateProxy
    // made just before a DeleteAccount marked the account. The account's row decides.
    await store.db.query("DELETE FROM proxy_allocations");
    await store.db.query("UPDATE proxies SET allocated = 0");
    const [a, b] = [newId(), newId()];
    await store.db.query("INSERT INTO accounts (id, platform, login, status, secrets, key_id) SELECT id, 'vk', id, $2, '', '' FROM unnest($1::text[]) AS id", [[a, b], AccountStatus.ACTIVE]);
    // A mark in flight: the allocation (one statement, then the locking path) waits for it, then refuses.
    let allocating: Promise<unknown> | undefined;
    let settledEarly: unknown = false;
    await second.transaction(async (tx) => {
      // A plain UPDATE (DeleteAccount also locks the row FOR UPDATE first; the guard must not need it).
      await tx.query("UPDATE accounts SET status = $2 WHERE id = $1", [a, AccountStatus.DELETED]);
      allocating = replicas[0].allocate(a, "vk", "", "").then(
        (p) => p.id,
        (err: unknown) => err,
      );
      void allocating.then((v) => (settledEarly = v instanceof Error ? `${v.name}: ${v.message}` : `allocated ${String(v)}`));
      await new Promise((r) => setTimeout(r, 300));
    });
    assert.equal(settledEarly, false, "the allocation did not wait for the account row's mark: it settled before");
    const refused = await allocating;
    assert.ok(refused instanceof AppError, `allocated ${String(refused)} to an account being deleted`);
    assert.deepEqual([refused.code, refused.reason], ["FAILED_PRECONDITION", "ACCOUNT_NOT_ACTIVE"]);
    // Marked before: refused at once; a live account next to it is served.
    await store.db.query("UPDATE accounts SET status = $2 WHERE id = $1", [b, AccountStatus.DELETED]);
    await assert.rejects(replicas[1].allocate(b, "vk", "", ""), (err: unknown) => err instanceof AppError && err.code === "FAILED_PRECONDITION");
    const live = newId();
    await store.db.query("INSERT INTO accounts (id, platform, login, status, secrets, key_id) VALUES ($1, 'vk', $1, $2, '', '')", [live, AccountStatus.ACTIVE]);
    assert.ok((await replicas[1].allocate(live, "vk", "", "")).id);
    const held = await checkPool(store.db);
    assert.deepEqual([held.has(a), held.has(b), held.has(live)], [false, false, true]);
  });

  test("600 allocations, each followed by a release, racing from both replicas keep every counter exact", async () => {
    await store.db.query("DELETE FROM proxy_allocations");
    await store.db.query("UPDATE proxies SET allocated = 0");
    await store.db.query("DELETE FROM proxies WHERE id NOT IN (SELECT id FROM proxies ORDER BY id LIMIT 6)");
    // 6 proxies × 2 slots for 40 workers over 30 accounts, allocating and releasing on alternating
    // replicas: more accounts want a slot than there are, and some workers share an account. A
    // fixed number of rounds, not a time window: a loaded machine runs the same race, slower.
    const accounts = Array.from({ length: 30 }, () => newId());
    const rounds = 15;
    const outcomes = { allocated: 0, exhausted: 0, released: 0 };
    await Promise.all(
      Array.from({ length: 40 }, async (_, w) => {
        for (let i = 0; i < rounds; i++) {
          const id = accounts[(w + i) % accounts.length];
          try {
            await replicas[(w + i) % 2].allocate(id, "vk", "", "");
            outcomes.allocated++;
          } catch (err) {
            assert.equal(codeOf(err), "RESOURCE_EXHAUSTED");
            outcomes.exhausted++;
          }
          if ((await replicas[(w + i + 1) % 2].release(id, "")).success) outcomes.released++;
        }
      }),
    );
    assert.equal(outcomes.allocated + outcomes.exhausted, 40 * rounds, `every allocation was answered: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.allocated >= 12 && outcomes.exhausted > 0, `the race ran: ${JSON.stringify(outcomes)}`);
    const held = await checkPool(store.db);
    assert.ok(held.size <= 12);
  });
});
