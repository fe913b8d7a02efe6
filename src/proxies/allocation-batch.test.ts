/**
 * AllocateProxy and ReleaseProxy calls made together share one statement (allocateMany,
 * releaseMany): each call still gets the answer it would get alone. The calls below are started
 * in one turn of the event loop, and a spy on the store checks that they did share a statement.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { create } from "@bufbuild/protobuf";
import { AccountSchema, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { AppError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { aad } from "./proxies-context.ts";
import { createProxies } from "./proxies.ts";
import type { Proxies } from "./proxies.ts";

const newId = createIdGenerator();
const reader = { tokenName: "batch-test", peer: "127.0.0.1:1" };

/** The outcome of a call: the proxy id, or the error's code. */
async function outcome(p: Promise<{ id: string }>): Promise<string> {
  try {
    return (await p).id;
  } catch (err) {
    if (err instanceof AppError) return err.code;
    throw err;
  }
}

for (const kind of STORE_KINDS) {
  describe(`batched AllocateProxy and ReleaseProxy on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let vault: Vault;
    let proxies: Proxies;
    /** The number of asks in each allocateMany / releaseMany statement run. */
    const batches = { allocate: [] as number[], release: [] as number[] };
    /** allocateMany statements running now, and the most at once. */
    const running = { now: 0, most: 0 };
    /** The audit log's last id before the test: its records are after it. */
    let auditMark = "0";

    before(async () => {
      store = await freshStore(kind);
      vault = await createVault(store.db, randomBytes(32), newId);
      const spy: Db = Object.create(store.db, {
        query: {
          value: (sql: string, params?: unknown[]) => {
            if (sql.includes("AS k(account_id, platform, audited")) {
              batches.allocate.push((params![0] as string[]).length);
              running.most = Math.max(running.most, ++running.now);
              return store.db.query(sql, params).finally(() => running.now--);
            }
            if (sql.includes("AS k(account_id, proxy_id)")) batches.release.push((params![0] as string[]).length);
            return store.db.query(sql, params);
          },
        },
      });
      // Every account is live as AccountService answers; the account's row (when there is one) decides DELETED.
      const accounts = { getAccount: async ({ accountId }: { accountId: string }) => create(AccountSchema, { id: accountId, status: AccountStatus.ACTIVE }) };
      const options = { leaseMs: 3_600_000, checkTarget: "127.0.0.1:1", allowedTargets: [], policy: { allowPrivate: true, store: [] }, checkTimeoutMs: 1000, failureThreshold: 3 };
      proxies = createProxies({ db: spy, vault, newId, accounts, log: pino({ level: "silent" }), options });
    });

    after(async () => {
      await store?.drop();
    });

    beforeEach(async () => {
      await store.db.query("DELETE FROM proxy_allocations");
      await store.db.query("DELETE FROM proxies");
      batches.allocate.length = 0;
      batches.release.length = 0;
      running.most = 0;
      auditMark = (await store.db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM audit_log")).rows[0].id;
    });

    /** Adds proxies (with sealed passwords) straight into the pool, ids in the order given; returns them. */
    async function addProxies(specs: { capacity: number; country?: string }[]): Promise<string[]> {
      const ids = specs.map(() => newId()).sort();
      for (const [i, s] of specs.entries()) {
        const sealed = vault.seal(`pw-${i}`, aad(ids[i]));
        await store.db.query(
          "INSERT INTO proxies (id, protocol, host, port, password_sealed, key_id, capacity, country) VALUES ($1, 'http', '198.18.0.1', $2, $3, $4, $5, $6)",
          [ids[i], 20000 + i, sealed.sealed, sealed.keyId, s.capacity, s.country ?? ""],
        );
      }
      return ids;
    }

    /** The pool's counters agree with the allocations (and proxy_counts with both); returns the allocations by account. */
    async function checkPool(): Promise<Map<string, string>> {
      const drift = await store.db.query(
        `SELECT p.id, p.allocated, count(a.account_id)::int AS held FROM proxies p LEFT JOIN proxy_allocations a ON a.proxy_id = p.id
         GROUP BY p.id, p.allocated HAVING p.allocated <> count(a.account_id) OR p.allocated > p.capacity`,
      );
      assert.deepEqual(drift.rows, [], "a proxy's allocated counter disagrees with its allocations, or is over capacity");
      const counts = await store.db.query<{ counted: number; held: number }>(
        "SELECT (SELECT coalesce(sum(allocated), 0)::int FROM proxy_counts) AS counted, (SELECT count(*)::int FROM proxy_allocations) AS held",
      );
      assert.equal(counts.rows[0].counted, counts.rows[0].held, "proxy_counts disagree with the allocations");
      const held = await store.db.query<{ account_id: string; proxy_id: string }>("SELECT account_id, proxy_id FROM proxy_allocations");
      return new Map(held.rows.map((r) => [r.account_id, r.proxy_id]));
    }

    async function auditedReads(): Promise<{ account_id: string; target: string }[]> {
      return (await store.db.query<{ account_id: string; target: string }>("SELECT account_id, target FROM audit_log WHERE action = 'proxy_password.read' AND actor = $1 AND id > $2::bigint ORDER BY id", [reader.tokenName, auditMark])).rows;
    }

    test("asks in one batch take the slots one-by-one picks would: least loaded first, ties by id", async () => {
      // Loads 0/3, 1/3 and 1/2: four picks one by one take a (0), then a, b, c (each at 1, by id).
      const [a, b, c] = await addProxies([{ capacity: 3 }, { capacity: 3 }, { capacity: 2 }]);
      const preload = [newId(), newId()];
      await store.db.query("INSERT INTO proxy_allocations (account_id, proxy_id, expires_at) SELECT x, p, now() + interval '1 hour' FROM unnest($1::text[], $2::text[]) AS t(x, p)", [preload, [b, c]]);
      await store.db.query("UPDATE proxies p SET allocated = (SELECT count(*) FROM proxy_allocations a WHERE a.proxy_id = p.id)");
      const accounts = Array.from({ length: 4 }, () => newId());
      const got = await Promise.all(accounts.map((id) => proxies.allocate(id, "vk", "", "")));
      assert.deepEqual(batches.allocate, [4], "the four asks shared one statement");
      assert.deepEqual(
        got.map((p) => p.id),
        [a, a, b, c],
      );
      const held = await checkPool();
      for (const [i, id] of accounts.entries()) assert.equal(held.get(id), got[i].id);
      const loads = await store.db.query<{ allocated: number }>("SELECT allocated FROM proxies ORDER BY id");
      assert.deepEqual(
        loads.rows.map((r) => r.allocated),
        [2, 2, 2],
      );
    });

    test("at most 16 asks a statement, one statement at a time: asks arriving while one runs go together into the next", async () => {
      await addProxies([{ capacity: 100 }]);
      const first = Array.from({ length: 40 }, () => newId());
      const wave1 = first.map((id) => proxies.allocate(id, "vk", "", ""));
      // A second wave, a few turns of the event loop later, while the first statement runs.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      const second = Array.from({ length: 10 }, () => newId());
      const got = await Promise.all([...wave1, ...second.map((id) => proxies.allocate(id, "vk", "", ""))]);
      assert.equal(got.length, 50);
      assert.equal(running.most, 1, "allocateMany statements overlapped");
      assert.equal(batches.allocate[0], 16);
      assert.ok(
        batches.allocate.every((n) => n <= 16),
        `batches: ${batches.allocate}`,
      );
      assert.equal(
        batches.allocate.reduce((a, b) => a + b, 0),
        50,
      );
      assert.ok(batches.allocate.length <= 5, `the waiting batches were merged: ${batches.allocate}`);
      assert.equal((await checkPool()).size, 50);
    });

    test("a preferred country is taken first in a batch, and an ask of another shape beside it is served too", async () => {
      const [, ru1, ru2] = await addProxies([{ capacity: 1 }, { capacity: 1, country: "RU" }, { capacity: 1, country: "RU" }]);
      const [x, y, z] = [newId(), newId(), newId()];
      const got = await Promise.all([proxies.allocate(x, "vk", "RU", ""), proxies.allocate(y, "vk", "RU", ""), proxies.allocate(z, "vk", "", "")]);
      assert.deepEqual(batches.allocate.toSorted(), [1, 2], "one statement per preference shape");
      assert.deepEqual([got[0].id, got[1].id].sort(), [ru1, ru2].sort());
      assert.deepEqual(got.map((p) => p.allocationNote), ["", "", ""]);
      await checkPool();
    });

    test("a batch mixing a renewal, new allocations and an exhausted pool answers each as alone, with its own audit record", async () => {
      const [p1, p2, p3] = await addProxies([{ capacity: 1 }, { capacity: 1 }, { capacity: 1 }]);
      const renewing = newId();
      const first = await proxies.allocate(renewing, "vk", "", "", reader);
      assert.equal(first.id, p1);
      batches.allocate.length = 0;
      const fresh = [newId(), newId(), newId()];
      const answers = await Promise.all([
        outcome(proxies.allocate(renewing, "vk", "", "", reader)),
        ...fresh.map((id, i) => outcome(proxies.allocate(id, "vk", "", "", i === 2 ? undefined : reader))),
      ]);
      assert.deepEqual(batches.allocate[0], 4, "the four asks shared one statement");
      assert.equal(answers[0], p1, "the renewal keeps its proxy");
      // Two slots were free (p2, p3) for three new accounts: one is refused, after the batch, on its own path.
      assert.deepEqual(answers.slice(1).filter((a) => a === "RESOURCE_EXHAUSTED").length, 1, `answers: ${answers}`);
      assert.deepEqual(answers.slice(1).filter((a) => a !== "RESOURCE_EXHAUSTED").sort(), [p2, p3].sort());
      const held = await checkPool();
      assert.equal(held.size, 3);
      for (const [i, id] of fresh.entries()) if (answers[i + 1] !== "RESOURCE_EXHAUSTED") assert.equal(held.get(id), answers[i + 1]);
      // Each password read by `reader` was audited once, with its proxy: the first allocation, the
      // renewal, and whichever of fresh[0], fresh[1] got a slot (fresh[2] asked without reading).
      const audited = await auditedReads();
      const expected = [
        { account_id: renewing, target: p1 },
        { account_id: renewing, target: p1 },
        ...fresh.slice(0, 2).flatMap((id, i) => (answers[i + 1] === "RESOURCE_EXHAUSTED" ? [] : [{ account_id: id, target: answers[i + 1] }])),
      ];
      assert.deepEqual(audited.map((r) => `${r.account_id}:${r.target}`).sort(), expected.map((r) => `${r.account_id}:${r.target}`).sort());
      // The password is answered only to the reader.
      const again = await Promise.all([proxies.allocate(renewing, "vk", "", "", reader), proxies.allocate(renewing, "vk", "", "")]);
      assert.deepEqual(
        again.map((p) => p.password),
        ["pw-0", ""],
      );
    });

    test("two asks for one account in a batch get the same proxy, and it holds one slot", async () => {
      await addProxies([{ capacity: 2 }, { capacity: 2 }]);
      const id = newId();
      const other = newId();
      const got = await Promise.all([proxies.allocate(id, "vk", "", "", reader), proxies.allocate(id, "vk", "", "", reader), proxies.allocate(other, "vk", "", "")]);
      assert.equal(batches.allocate[0], 2, "the account's first ask and the other account's shared a statement");
      assert.equal(got[0].id, got[1].id);
      const held = await checkPool();
      assert.equal(held.size, 2);
      assert.equal(held.get(id), got[0].id);
      assert.equal((await auditedReads()).length, 2, "each read audited");
    });

    test("a DELETED account in a batch is refused and takes no slot; the live ones beside it are served", async () => {
      await addProxies([{ capacity: 4 }]);
      const [gone, live1, live2] = [newId(), newId(), newId()];
      await store.db.query("INSERT INTO accounts (id, platform, login, status, secrets, key_id) SELECT id, 'vk', id, $2, '', '' FROM unnest($1::text[]) AS id", [[gone, live1], AccountStatus.ACTIVE]);
      await store.db.query("UPDATE accounts SET status = $2 WHERE id = $1", [gone, AccountStatus.DELETED]);
      const answers = await Promise.all([gone, live1, live2].map((id) => outcome(proxies.allocate(id, "vk", "", ""))));
      assert.equal(batches.allocate[0], 3);
      assert.equal(answers[0], "FAILED_PRECONDITION");
      assert.ok(answers[1] && answers[1] === answers[2], `answers: ${answers}`);
      const held = await checkPool();
      assert.deepEqual([held.has(gone), held.has(live1), held.has(live2)], [false, true, true]);
    });

    test("releases in one batch: each account's slot given back once; a second release of an account, or one naming another proxy, releases nothing", async () => {
      const [p1, p2] = await addProxies([{ capacity: 2 }, { capacity: 2 }]);
      const accounts = Array.from({ length: 4 }, () => newId());
      const got = await Promise.all(accounts.map((id) => proxies.allocate(id, "vk", "", "")));
      assert.deepEqual(got.map((p) => p.id).sort(), [p1, p1, p2, p2]);
      const [a, b, c, d] = accounts;
      const other = got[2].id === p1 ? p2 : p1;
      const out = await Promise.all([
        proxies.release(a, ""),
        proxies.release(a, ""),
        proxies.release(b, got[1].id),
        proxies.release(c, other),
        proxies.release(newId(), ""),
      ]);
      assert.equal(batches.release[0], 4, "the releases of four accounts shared a statement (a's second after it)");
      assert.deepEqual(
        out.map((r) => r.success),
        [true, false, true, false, false],
      );
      assert.deepEqual([out[0].proxyId, out[2].proxyId], [got[0].id, got[1].id]);
      const held = await checkPool();
      assert.deepEqual([...held.keys()].sort(), [c, d].sort());
    });
  });
}
