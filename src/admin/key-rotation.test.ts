/**
 * Key rotation as the server runs it, on the real store (PGlite, and PostgreSQL when set): the
 * background sweep to the end with its progress on the row, one RUNNING at a time, a dead
 * process's rotation failed after the lease and finished by the next one, and a clean stop.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { pino } from "pino";
import { CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { KeyRotationState } from "../gen/conveer/v1/admin_pb.js";
import type { KeyRotation } from "../gen/conveer/v1/admin_pb.js";
import { createAccounts } from "../accounts/accounts.ts";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { createVault } from "../vault/vault.ts";
import type { Vault } from "../vault/vault.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createAdmin } from "./admin.ts";
import type { Admin } from "./admin.ts";

const MASTER = Buffer.alloc(32, 0x11);
const WHO = { name: "tester", peer: "local" };

async function until(admin: Admin, id: string, ms = 30_000): Promise<KeyRotation> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await admin.getKeyRotation(id);
    if (r.state !== KeyRotationState.RUNNING) return r;
    if (Date.now() > end) throw new Error(`rotation ${id} still RUNNING after ${ms} ms: ${r.done}/${r.total}`);
    await sleep(20);
  }
}

for (const kind of STORE_KINDS) {
  describe(`key rotation on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    let vault: Vault;
    const admins: Admin[] = [];
    const newId = createIdGenerator();
    const admin = (leaseMs?: number) => {
      const a = createAdmin({ db, vault, newId, log: pino({ level: "silent" }), rotationLeaseMs: leaseMs, rotationHeartbeatMs: 50 });
      admins.push(a);
      return a;
    };
    const keysInUse = async () => (await db.query<{ key_id: string }>("SELECT DISTINCT key_id FROM accounts ORDER BY 1")).rows.map((r) => r.key_id);

    before(async () => {
      store = await freshStore(kind);
      db = store.db;
      vault = await createVault(db, MASTER, newId);
      const accounts = createAccounts({ db, vault, newId });
      await accounts.importMany(
        Array.from({ length: 60 }, (_, i) => create(CreateAccountRequestSchema, { platform: "vk", login: `rot-${i}`, password: `pw-${i}` })),
        "seed",
      );
    });
    after(async () => {
      for (const a of admins) await a.stop();
      await vault?.stop();
      await store?.drop();
    });

    test("a rotation runs in the background to the end: progress on the row, every value under the new key, audited", async () => {
      const a = admin();
      const started = await a.startKeyRotation(7, WHO);
      assert.equal(started.state, KeyRotationState.RUNNING);
      assert.equal(started.total, 60n);
      assert.equal(started.startedBy, "tester");
      const end = await until(a, started.id);
      assert.equal(end.state, KeyRotationState.SUCCEEDED, end.error);
      assert.equal(end.done, 60n);
      assert.equal(end.remaining, 0n);
      assert.ok(end.finishedAt);
      assert.deepEqual(await keysInUse(), [end.keyId]);
      // The newest is answered for an empty id; the audit entry names the key.
      assert.equal((await a.getKeyRotation("")).id, started.id);
      const audit = await db.query<{ actor: string; target: string }>("SELECT actor, target FROM audit_log WHERE action = 'keys.rotate'");
      assert.deepEqual(audit.rows, [{ actor: "tester", target: end.keyId }]);
      // A secret still opens, under the new key.
      const accounts = createAccounts({ db, vault, newId });
      const one = (await db.query<{ id: string }>("SELECT id FROM accounts WHERE login = 'rot-5'")).rows[0];
      assert.equal((await accounts.credentials(one.id, "tester", "")).password, "pw-5");
    });

    test("one RUNNING at a time: a second start names the running one; a dead process's rotation fails after the lease and a new one finishes the sweep", async () => {
      const a = admin(2000);
      // A rotation some other process started and still heartbeats.
      await db.query("INSERT INTO key_rotations (id, state, key_id, total, done, batch_size, started_by) VALUES ('0000000000000000000000aa', 'RUNNING', 'nokey', 10, 3, 5, 'elsewhere')");
      const before = await keysInUse();
      await assert.rejects(a.startKeyRotation(0, WHO), { code: "FAILED_PRECONDITION", message: /key rotation 0000000000000000000000aa \(started by elsewhere .*3\/10 done\) is still running/ });
      assert.deepEqual(await keysInUse(), before, "nothing changed");
      assert.equal((await db.query("SELECT 1 FROM data_keys WHERE active AND id = $1", [before[0]])).rowCount, 1, "no new key became active");
      // Its process dies: no heartbeat for longer than the lease.
      await db.query("UPDATE key_rotations SET heartbeat_at = now() - interval '3 seconds' WHERE id = '0000000000000000000000aa'");
      const dead = await a.getKeyRotation("0000000000000000000000aa");
      assert.equal(dead.state, KeyRotationState.FAILED);
      assert.match(dead.error, /the process running it stopped/);
      const next = await a.startKeyRotation(0, WHO);
      const end = await until(a, next.id);
      assert.equal(end.state, KeyRotationState.SUCCEEDED, end.error);
      assert.deepEqual(await keysInUse(), [end.keyId]);
    });

    test("a stop ends a running rotation cleanly between two batches, FAILED saying why; the next one finishes the sweep", async () => {
      const a = admin();
      const started = await a.startKeyRotation(1, WHO);
      await a.stop();
      const r = await admin().getKeyRotation(started.id);
      assert.equal(r.state, KeyRotationState.FAILED);
      assert.match(r.error, /interrupted: the process running it is stopping/);
      assert.ok(r.done < 60n, `done ${r.done}`);
      assert.ok(r.remaining > 0n);
      const b = admin();
      const end = await until(b, (await b.startKeyRotation(0, WHO)).id);
      assert.equal(end.state, KeyRotationState.SUCCEEDED, end.error);
      assert.equal(end.total, 60n, "everything not under the newest key: the old one's leftovers and what the stopped one moved");
      assert.deepEqual(await keysInUse(), [end.keyId]);
      // The superseded rotation now has nothing left under the keys it replaced.
      assert.equal((await b.getKeyRotation(started.id)).remaining, 0n);
    });

    test("batch_size out of range is INVALID_ARGUMENT; an unknown rotation is NOT_FOUND", async () => {
      const a = admin();
      await assert.rejects(a.startKeyRotation(10_001, WHO), { code: "INVALID_ARGUMENT", message: /batch_size must be between 1 and 10000/ });
      await assert.rejects(a.getKeyRotation("0123456789abcdef01234567"), { code: "NOT_FOUND" });
    });
  });
}
