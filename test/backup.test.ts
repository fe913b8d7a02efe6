/**
 * `conveer backup`, `conveer restore` and `conveer migrate-store` on data made by a real `conveer
 * start` on the embedded store (a token, accounts with credentials): the archive is restored into a
 * new data directory, and a server started from it reads the credentials back; a backup taken
 * through a running server (writers under way) restores too; the store is copied
 * into a fresh PostgreSQL database (when CONVEER_TEST_DATABASE_URL is set) and a server on it reads
 * them too. Refusals: a restore into a data directory held by a server, a non-empty restore target, a target
 * database that already holds rows.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { dropPostgresDatabase } from "./support/store.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";
import type { Cli } from "./support/cli.ts";

const ACCOUNTS = [
  { platform: "vk", login: "backup-vk", password: "pw-vk-Ω" },
  { platform: "telegram", login: "backup-tg", password: "pw-tg-\"quoted\" \\ done" },
];

describe("conveer backup / restore / migrate-store (embedded store)", () => {
  let root: string;
  let dataDir: string;
  let token = "";
  const ids: string[] = [];
  /** Accounts the online backup's writers made in the same data directory. */
  let onlineMade = 0;
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];
  const cli = async (args: string[], dir: string, extra: Record<string, string> = {}) => {
    const c = runCli(args, { CONVEER_DATA_DIR: dir, ...extra });
    children.push(c);
    return { code: await c.exited, out: c.stdout(), err: c.stderr() };
  };
  /** Starts a server on dir (extra env on top), runs fn with an AccountService client, stops it cleanly. */
  const serve = async (dir: string, extra: Record<string, string>, fn: (accounts: ReturnType<typeof remoteClient<typeof AccountService>>, server: Cli) => Promise<void>) => {
    const sys = await systemEnv(dir, extra);
    const server = runCli(["start"], sys.env);
    children.push(server);
    await waitHealthy(server, sys.http);
    try {
      await fn(remoteClient(AccountService, { addr: sys.addr("account"), token, sessions }), server);
    } finally {
      const { code } = await terminate(server);
      assert.equal(code, 0, server.stderr());
    }
  };
  const readBack = async (accounts: ReturnType<typeof remoteClient<typeof AccountService>>) => {
    for (const [i, a] of ACCOUNTS.entries()) {
      assert.equal((await accounts.getAccount({ accountId: ids[i] })).login, a.login);
      assert.equal((await accounts.getCredentials({ accountId: ids[i] })).password, a.password, "GetCredentials opens the sealed secret: master key and data intact");
    }
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "conveer-backup-"));
    dataDir = join(root, "a");
    const made = await cli(["token", "create", "--name", "ops", "--scopes", "*"], dataDir);
    assert.equal(made.code, 0, made.err);
    token = made.out.trim();
    await serve(dataDir, {}, async (accounts, server) => {
      for (const a of ACCOUNTS) ids.push((await accounts.createAccount(a)).id);
      // While the server runs, the data directory is locked: restore refuses, naming it (backup
      // goes through the server: its own test below).
      const restoreLocked = await cli(["restore", join(root, "never.backup"), "--force"], dataDir);
      assert.equal(restoreLocked.code, 1);
      assert.match(restoreLocked.err, new RegExp(`another conveer process \\(pid ${server.proc.pid}\\) is using the embedded store in ${dataDir}`));
    });
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(children);
    await rm(root, { recursive: true, force: true });
  });

  test("backup without the key says so; restored into a new directory beside the original master.key, a server reads the credentials", async () => {
    const file = join(root, "plain.backup");
    const b = await cli(["backup", "--out", file], dataDir);
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /master key is NOT in this backup: back it up separately/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(root)).filter((f) => f.endsWith(".tmp")), [], "no temporary file left");

    const restored = join(root, "b");
    const r = await cli(["restore", file], restored);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /the archive holds no master key: put the original master\.key/);
    await assert.rejects(stat(join(restored, "master.key")), { code: "ENOENT" });
    await copyFile(join(dataDir, "master.key"), join(restored, "master.key"));
    await serve(restored, {}, readBack);
  });

  test("backup --with-master-key warns and carries the key; restore refuses a non-empty directory unless --force", async () => {
    const file = join(root, "keyed.backup");
    const b = await cli(["backup", "--out", file, "--with-master-key"], dataDir);
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /WARNING: .* holds master\.key, the key to every secret/);

    const target = join(root, "c");
    await mkdir(target);
    await copyFile(join(dataDir, "sandbox.json"), join(target, "sandbox.json"));
    const refused = await cli(["restore", file], target);
    assert.equal(refused.code, 1);
    assert.match(refused.err, new RegExp(`the data directory ${target} is not empty \\(sandbox\\.json\\).*--force`));
    const forced = await cli(["restore", file, "--force"], target);
    assert.equal(forced.code, 0, forced.err);
    assert.equal((await stat(join(target, "master.key"))).mode & 0o777, 0o600);
    await serve(target, {}, readBack);

    const notArchive = await cli(["restore", join(dataDir, "sandbox.json")], join(root, "d"));
    assert.equal(notArchive.code, 1);
    assert.match(notArchive.err, /is not a conveer backup/);
    const bytes = await readFile(file);
    await writeFile(join(root, "cut.backup"), bytes.subarray(0, bytes.length - 100));
    const cut = await cli(["restore", join(root, "cut.backup")], join(root, "e"));
    assert.equal(cut.code, 1);
    assert.match(cut.err, /is cut short or damaged: the store dump holds \d+ bytes, the header says \d+/);
    await assert.rejects(stat(join(root, "e", "pgdata", "PG_VERSION")), { code: "ENOENT" }, "nothing restored from a damaged archive");
  });

  test("backup while a server runs goes through it (admin scope), with writers under way: none fails, and the archive restores with every account made before it began", async () => {
    const file = join(root, "online.backup");
    const sys = await systemEnv(dataDir, {});
    const server = runCli(["start"], sys.env);
    children.push(server);
    await waitHealthy(server, sys.http);
    const reach = { CONVEER_HTTP_ADDR: sys.env.CONVEER_HTTP_ADDR };
    const made: string[] = [];
    const failures: string[] = [];
    let begun = 0;
    try {
      const accounts = remoteClient(AccountService, { addr: sys.addr("account"), token, sessions });
      let writing = true;
      const writers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; writing; i++) {
          await accounts.createAccount({ platform: "vk", login: `online-${w}-${i}`, password: `pw-${w}-${i}` }).then(
            (a) => void made.push(a.id),
            (err: unknown) => void failures.push(String(err)),
          );
        }
      });
      await eventually(() => made.length >= 20, 20_000, "the writers to get going");
      const noToken = await cli(["backup", "--out", file], dataDir, reach);
      assert.equal(noToken.code, 1);
      assert.match(noToken.err, /backup through the server at .* failed: .*token.*nothing was written/i);
      begun = made.length;
      const b = await cli(["backup", "--out", file], dataDir, { ...reach, CONVEER_TOKEN: token });
      const during = made.length - begun;
      writing = false;
      await Promise.all(writers);
      onlineMade = made.length;
      assert.equal(b.code, 0, b.err);
      assert.match(b.err, new RegExp(`a server holds ${dataDir}: backing up through it`));
      assert.match(b.out, /backed up .* \(store dump \d+ bytes; with sandbox\.json\)/);
      assert.deepEqual(failures, [], "no write failed while the server dumped");
      assert.ok(during > 0, "writes went on while the backup ran");
      assert.equal((await stat(file)).mode & 0o777, 0o600);
    } finally {
      const { code } = await terminate(server);
      assert.equal(code, 0, server.stderr());
    }
    const audit = await cli(["audit", "--action", "store.backup", "--output", "json"], dataDir);
    assert.equal(audit.code, 0, audit.err);
    assert.match(audit.out, /"actor":"ops".*"action":"store.backup"/);

    // restore checks the row counts taken with the dump: a torn copy would be refused here.
    const restored = join(root, "online");
    const r = await cli(["restore", file], restored);
    assert.equal(r.code, 0, r.err);
    await copyFile(join(dataDir, "master.key"), join(restored, "master.key"));
    await serve(restored, {}, async (accounts) => {
      await readBack(accounts);
      for (const id of made.slice(0, begun)) assert.ok((await accounts.getAccount({ accountId: id })).id, `account ${id}, made before the backup began`);
      const last = made.slice(0, begun).at(-1)!;
      assert.match((await accounts.getCredentials({ accountId: last })).password, /^pw-\d+-\d+$/);
    });
  });

  const base = process.env.CONVEER_TEST_DATABASE_URL;
  test("migrate-store copies every table into an empty PostgreSQL database; a server on it reads the credentials; a second copy is refused", { skip: base ? false : "CONVEER_TEST_DATABASE_URL is not set" }, async () => {
    const name = `conveer_migrate_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(base!);
    url.pathname = `/${name}`;
    try {
      const m = await cli(["migrate-store", "--to", url.toString()], dataDir);
      assert.equal(m.code, 0, m.err);
      // The two of before() and those the online backup's writers made: a thousand and more, over many pages.
      assert.match(m.out, new RegExp(`^accounts\\s+${onlineMade + 2}\\s+${onlineMade + 2}$`, "m"));
      assert.match(m.out, /^api_tokens\s+1\s+1$/m);
      assert.match(m.out, /row counts match/);
      assert.match(m.err, /the SAME master key/);

      const again = await cli(["migrate-store", "--to", url.toString()], dataDir);
      assert.equal(again.code, 1);
      assert.match(again.err, /the target database is not empty: table \w+ holds \d+ row\(s\)/);

      // The new deployment: DATABASE_URL, and the same master key (here its file in a new data directory).
      const onPg = join(root, "pg");
      await mkdir(onPg);
      await copyFile(join(dataDir, "master.key"), join(onPg, "master.key"));
      await serve(onPg, { DATABASE_URL: url.toString(), CONVEER_DB_POOL_SIZE: "12" }, async (accounts) => {
        await readBack(accounts);
        // Sequences were carried over: new rows (and their audit entries) get fresh ids.
        const more = await accounts.createAccount({ platform: "vk", login: "after-migrate", password: "pw" });
        assert.equal((await accounts.getCredentials({ accountId: more.id })).password, "pw");
      });
    } finally {
      await dropPostgresDatabase(url.toString());
    }
  });
});
