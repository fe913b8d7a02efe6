import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { CreateAccountRequest } from "../gen/conveer/v1/account_pb.js";
import { createAccounts } from "../accounts/accounts.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openPostgres } from "../store/postgres.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createActiveKey, createVault, reencryptAll, remainingUnder } from "./vault.ts";
import type { Vault } from "./vault.ts";

const MASTER = Buffer.alloc(32, 0x11);
const OTHER_MASTER = Buffer.alloc(32, 0x22);

function accountReq(login: string, password: string): CreateAccountRequest {
  return {
    $typeName: "conveer.CreateAccountRequest",
    platform: "vk",
    login,
    password,
    phone: "",
    additional: { note: `extra-${login}` },
    labels: {},
    status: AccountStatus.UNSPECIFIED,
  } as CreateAccountRequest;
}

/** Polls cond every 20 ms until it holds or ms pass; returns whether it held. */
async function eventually(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(20);
  }
}

async function keyIdsIn(db: Db): Promise<string[]> {
  return (await db.query<{ key_id: string }>("SELECT DISTINCT key_id FROM accounts ORDER BY key_id")).rows.map((r) => r.key_id);
}

for (const kind of STORE_KINDS) {
  describe(`vault on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    const vaults: Vault[] = [];
    const extraDbs: Db[] = [];
    const newId = createIdGenerator();
    const vault = async (on: Db = db, master = MASTER) => {
      const v = await createVault(on, master, newId);
      vaults.push(v);
      return v;
    };
    /** Another "replica": its own connection pool on PostgreSQL, the same instance on PGlite (one process per data dir). */
    const replicaDb = (): Db => {
      if (kind === "pglite") return db;
      const other = openPostgres({ url: store.url, max: 4 });
      extraDbs.push(other);
      return other;
    };

    before(async () => {
      store = await freshStore(kind);
      db = store.db;
    });
    after(async () => {
      for (const v of vaults) await v.stop();
      for (const d of extraDbs) await d.close();
      await store.drop();
    });

    test("replicas starting at once on an empty store agree on a single first data key", async () => {
      const [a, b, c] = await Promise.all([vault(db), vault(replicaDb()), vault(replicaDb())]);
      const keys = await db.query<{ id: string; active: boolean }>("SELECT id, active FROM data_keys");
      assert.equal(keys.rowCount, 1, `expected one data key, found ${JSON.stringify(keys.rows)}`);
      assert.equal(keys.rows[0].active, true);
      assert.deepEqual([a.activeKeyId(), b.activeKeyId(), c.activeKeyId()], [keys.rows[0].id, keys.rows[0].id, keys.rows[0].id]);
    });

    test("seals under the active key and opens only with the same aad; the sealed text hides the plaintext", async () => {
      const v = await vault();
      const { sealed, keyId } = v.seal("hunter2-secret", "account:abc");
      assert.equal(keyId, v.activeKeyId());
      assert.ok(!sealed.includes("hunter2"), "sealed text contains the plaintext");
      assert.equal(await v.open(sealed, "account:abc"), "hunter2-secret");
      await assert.rejects(v.open(sealed, "account:other"), /tampered or wrong key/);
      // Another vault over the same store (same master key) opens it too.
      const w = await vault(replicaDb());
      assert.equal(await w.open(sealed, "account:abc"), "hunter2-secret");
    });

    test("a wrong master key fails at createVault with an error naming the master key", async () => {
      await assert.rejects(createVault(db, OTHER_MASTER, newId), (err: Error) => {
        assert.match(err.message, /cannot unwrap data key .*master key .*CONVEER_MASTER_KEY/);
        return true;
      });
    });

    test("createActiveKey refuses a master key that cannot unwrap the active key, and changes nothing", async () => {
      const before = await db.query("SELECT id, active FROM data_keys ORDER BY id");
      await assert.rejects(createActiveKey(db, OTHER_MASTER, newId()), /cannot unwrap data key .*master key/);
      assert.deepEqual((await db.query("SELECT id, active FROM data_keys ORDER BY id")).rows, before.rows);
    });

    test("keys rotate: re-encrypts everything in small batches while accounts keep being created", async () => {
      // The "server" replica: creates accounts through the domain with its own vault.
      const serverDb = replicaDb();
      const serverVault = await vault(serverDb);
      const accounts = createAccounts({ db: serverDb, vault: serverVault, newId });
      // A replica that has not heard of the rotation yet (it stopped listening): it keeps sealing under the old key.
      const staleVault = await vault(serverDb);
      await staleVault.stop();
      const staleAccounts = createAccounts({ db: serverDb, vault: staleVault, newId });
      const plain = new Map<string, string>();
      const make = async (via: typeof accounts, login: string) => {
        const pw = `pw-${login}-${Math.random().toString(36).slice(2)}`;
        const acc = await via.create(accountReq(login, pw), "test");
        plain.set(acc.id, pw);
      };
      for (let i = 0; i < 60; i++) await make(accounts, `before-${i}`);
      const oldKey = serverVault.activeKeyId();
      assert.deepEqual(await keyIdsIn(db), [oldKey]);

      // The "CLI": a new active key, then a vault that seals under it.
      const newKey = await createActiveKey(db, MASTER, newId());
      assert.notEqual(newKey, oldKey);
      const cliVault = await vault();
      assert.equal(cliVault.activeKeyId(), newKey);

      // Accounts keep arriving during the rotation, from an up-to-date replica and from the stale one.
      const writer = (async () => {
        for (let i = 0; i < 20; i++) {
          await Promise.all([make(accounts, `during-${i}`), make(staleAccounts, `stale-${i}`)]);
          await sleep(5);
        }
      })();
      let writing = true;
      void writer.finally(() => (writing = false));
      let done = 0;
      let progressCalls = 0;
      let left = -1;
      for (let pass = 0; pass < 100; pass++) {
        const wasWriting = writing;
        done += await reencryptAll(db, cliVault, { batchSize: 7, onProgress: () => progressCalls++ });
        left = await remainingUnder(db, newKey);
        if (left === 0 && !wasWriting) break;
        await sleep(10);
      }
      await writer;
      assert.equal(staleVault.activeKeyId(), oldKey, "the stale replica should have sealed under the old key throughout");
      assert.equal(left, 0, "values remain under older keys after 100 passes");
      assert.ok(done >= 80, `expected the 60 earlier and 20 stale values re-encrypted, got ${done}`);
      assert.ok(progressCalls > 60 / 7, `batches of 7 should report progress per batch, got ${progressCalls} calls`);
      assert.deepEqual(await keyIdsIn(db), [newKey], "the old key id still appears in accounts.key_id");

      // Every value still opens to its original plaintext, through the raw rows and through the domain.
      assert.equal(plain.size, 100);
      const rows = await db.query<{ id: string; secrets: string }>("SELECT id, secrets FROM accounts");
      assert.equal(rows.rowCount, plain.size);
      for (const row of rows.rows) {
        assert.ok(row.secrets.startsWith(`v1.${newKey}.`), `account ${row.id} is sealed under ${row.secrets.split(".")[1]}`);
        const s = JSON.parse(await cliVault.open(row.secrets, `account:${row.id}`)) as { password: string };
        assert.equal(s.password, plain.get(row.id));
        const cred = await accounts.credentials(row.id, "test", "");
        assert.equal(cred.password, plain.get(row.id));
      }
    });

    test("another replica follows a rotation: it seals new values under the new key without a restart", async () => {
      const replica = await vault(replicaDb());
      const before = replica.activeKeyId();
      const rotated = await createActiveKey(db, MASTER, newId());
      assert.notEqual(rotated, before);
      assert.ok(await eventually(() => replica.activeKeyId() === rotated), `replica still seals under ${replica.activeKeyId()}, not ${rotated}`);
      const { sealed, keyId } = replica.seal("after-rotation", "account:x");
      assert.equal(keyId, rotated);
      assert.ok(sealed.startsWith(`v1.${rotated}.`));
      // And values sealed before the rotation still open.
      const old = (await db.query<{ id: string; secrets: string }>("SELECT id, secrets FROM accounts LIMIT 1")).rows[0];
      assert.ok(old, "no account from the rotation test");
      assert.match(await replica.open(old.secrets, `account:${old.id}`), /"password"/);
    });

    test("a vault that missed a rotation still opens values sealed under the new key (it reloads)", async () => {
      const stale = await vault(replicaDb());
      await stale.stop(); // no more notifications
      const rotated = await createActiveKey(db, MASTER, newId());
      const fresh = await vault();
      assert.equal(fresh.activeKeyId(), rotated);
      const { sealed } = fresh.seal("new-key-value", "proxy:p1");
      assert.equal(await stale.open(sealed, "proxy:p1"), "new-key-value");
      assert.equal(stale.activeKeyId(), rotated, "open() reloads the keys, so the stale vault learns the active one too");
    });
  });
}
