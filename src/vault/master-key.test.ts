import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Db } from "../store/db.ts";
import { createIdGenerator } from "../store/ids.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { loadMasterKey } from "./master-key.ts";
import { createVault } from "./vault.ts";

const log = pino({ level: "silent" });

for (const kind of STORE_KINDS) {
  describe(`master key on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    let db: Db;
    let dataDir: string;
    // The embedded default (no DATABASE_URL) and a replica on PostgreSQL without CONVEER_MASTER_KEY.
    const config = () => ({ masterKey: "", dataDir, databaseUrl: kind === "postgres" ? store.url : "" });
    before(async () => {
      store = await freshStore(kind);
      db = store.db;
    });
    after(async () => {
      await store.drop();
    });

    test("a store without data keys gets a new key file (0600), which the next start reads", async () => {
      dataDir = await mkdtemp(join(tmpdir(), "conveer-key-"));
      try {
        const key = await loadMasterKey(config(), log, db);
        assert.equal(key.length, 32);
        assert.equal((await stat(join(dataDir, "master.key"))).mode & 0o777, 0o600);
        assert.deepEqual(await loadMasterKey(config(), log, db), key);
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });

    test("a store holding data keys with its key file gone is refused, and no new key file is written", async () => {
      dataDir = await mkdtemp(join(tmpdir(), "conveer-key-"));
      try {
        const key = await loadMasterKey(config(), log, db);
        const vault = await createVault(db, key, createIdGenerator());
        await vault.stop();
        const file = join(dataDir, "master.key");
        await rm(file);
        await assert.rejects(loadMasterKey(config(), log, db), (err: Error) => {
          assert.ok(err.message.includes(`master key file ${file} is missing`), err.message);
          assert.match(err.message, /CONVEER_MASTER_KEY is not set/);
          assert.match(err.message, /holds 1 data key\(s\)/);
          assert.match(err.message, /Restore master\.key from a backup .*or set CONVEER_MASTER_KEY to that key/);
          return true;
        });
        assert.equal(existsSync(file), false, "no fresh master key beside the existing data");
        // The key restored (as a file, or in CONVEER_MASTER_KEY) opens the store again.
        await writeFile(file, key.toString("hex") + "\n", { mode: 0o600 });
        const again = await createVault(db, await loadMasterKey(config(), log, db), createIdGenerator());
        await again.stop();
        await rm(file);
        assert.deepEqual(await loadMasterKey({ ...config(), masterKey: key.toString("hex") }, log, db), key);
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });
}
