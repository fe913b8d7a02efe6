import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { pino } from "pino";
import { toStatus } from "../server/status.ts";
import type { Db } from "./db.ts";
import { openStore } from "./open.ts";
import { ROW_COUNTS_FILE } from "./pglite-damage.ts";

const log = pino({ level: "silent" });
const PAGE = 8192;

/** The relation file of a table or index, relative to the PGlite data directory. */
async function fileOf(db: Db, relation: string): Promise<string> {
  return (await db.query<{ p: string }>("SELECT pg_relation_filepath($1::regclass) AS p", [relation])).rows[0].p;
}

/** Overwrites `bytes` of `file` at `offset`. */
function overwrite(file: string, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

describe("damage to the embedded store's files", () => {
  let template: string;
  let accountsFile = "";
  let pkeyFile = "";
  const dirs: string[] = [];
  // A data directory holding 50 accounts over two heap pages, closed cleanly; each test damages a copy.
  before(async () => {
    template = await mkdtemp(join(tmpdir(), "conveer-damage-"));
    dirs.push(template);
    const db = await openStore({ databaseUrl: "", dataDir: template }, log);
    await db.query(
      "INSERT INTO accounts (id, platform, login, status, secrets, key_id) SELECT lpad(g::text, 24, '0'), 'vk', 'user' || g, 1, repeat('s', 200), '' FROM generate_series(1, 50) g",
    );
    accountsFile = await fileOf(db, "accounts");
    pkeyFile = await fileOf(db, "accounts_pkey");
    assert.equal((await db.query<{ data_checksums: string }>("SHOW data_checksums")).rows[0].data_checksums, "on");
    await db.close();
    assert.ok(fs.statSync(join(template, "pgdata", accountsFile)).size >= 2 * PAGE, "the accounts span two pages");
  });
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const copy = async () => {
    const d = await mkdtemp(join(tmpdir(), "conveer-damage-"));
    dirs.push(d);
    fs.cpSync(template, d, { recursive: true });
    return { dataDir: d, pgdata: join(d, "pgdata") };
  };
  const open = (dataDir: string) => openStore({ databaseUrl: "", dataDir }, log);
  const count = async (db: Db) => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM accounts")).rows[0].n;

  test("a clean close records the row counts; the next open compares and removes the record (a crash leaves none)", async () => {
    const { dataDir, pgdata } = await copy();
    assert.deepEqual(JSON.parse(fs.readFileSync(join(pgdata, ROW_COUNTS_FILE), "utf8")).tables.accounts, 50);
    const db = await open(dataDir);
    try {
      assert.equal(fs.existsSync(join(pgdata, ROW_COUNTS_FILE)), false);
      assert.equal(await count(db), 50);
    } finally {
      await db.close();
    }
    assert.ok(fs.existsSync(join(pgdata, ROW_COUNTS_FILE)));
  });

  test("a heap page turned to zeros (rows silently gone to PostgreSQL) refuses the start, naming the directory, the table and the fix", async () => {
    const { dataDir, pgdata } = await copy();
    overwrite(join(pgdata, accountsFile), PAGE, Buffer.alloc(PAGE));
    await assert.rejects(open(dataDir), (err: Error) => {
      assert.match(err.message, new RegExp(`^the embedded store in ${pgdata} is damaged: table accounts has \\d+ rows, 50 when it was last closed cleanly`));
      assert.match(err.message, /Restore it from a backup \(the whole CONVEER_DATA_DIR/);
      assert.ok(err.message.includes(`To start anyway with the rows that are left, delete ${join(pgdata, ROW_COUNTS_FILE)}`), err.message);
      return true;
    });
    // The operator's explicit choice: without the record the store opens with what is left.
    fs.rmSync(join(pgdata, ROW_COUNTS_FILE));
    const db = await open(dataDir);
    try {
      assert.ok((await count(db)) < 50);
    } finally {
      await db.close();
    }
  });

  test("a relation file cut short refuses the start", async () => {
    const { dataDir, pgdata } = await copy();
    fs.truncateSync(join(pgdata, accountsFile), PAGE);
    await assert.rejects(open(dataDir), /table accounts has \d+ rows, 50 when it was last closed cleanly/);
  });

  test("changed bytes in a heap page fail its checksum and refuse the start, even after a crash (no record to compare)", async () => {
    const { dataDir, pgdata } = await copy();
    fs.rmSync(join(pgdata, ROW_COUNTS_FILE));
    overwrite(join(pgdata, accountsFile), PAGE + 4000, Buffer.from("garbage, not a tuple"));
    await assert.rejects(open(dataDir), new RegExp(`^Error: the embedded store in ${pgdata} is damaged: reading table accounts failed: invalid page in block 1 of relation .*Restore it from a backup`));
  });

  test("a damaged index page (not read at open) fails the calls that read it with DATA_LOSS, never wrong rows", async () => {
    const { dataDir, pgdata } = await copy();
    overwrite(join(pgdata, pkeyFile), PAGE + 4000, Buffer.from("garbage in the index"));
    const db = await open(dataDir);
    try {
      await db.query("SET enable_seqscan = off");
      const err = await db.query("SELECT id FROM accounts WHERE id = $1", ["0".repeat(22) + "10"]).then(() => undefined, (e: unknown) => e);
      assert.ok(err, "the damaged index page was read without an error");
      const s = toStatus(err);
      assert.equal(s.code, GrpcStatus.DATA_LOSS);
      assert.match(s.message, /the store's data is damaged .* restore the store from a backup/);
    } finally {
      await db.close().catch(() => {});
    }
  });
});
