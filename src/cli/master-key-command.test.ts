/**
 * `conveer keys rotate-master` as a child process, on the embedded store (master.key in the data
 * directory) and on PostgreSQL (CONVEER_MASTER_KEY, hosts switching with CONVEER_MASTER_KEY_PREVIOUS):
 * a server started afterwards with only the new key reads every credential, with only the old one
 * it refuses; a wrong current key changes nothing; a crash between the commit and the key file's
 * replacement still starts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { CreateAccountRequest } from "../gen/conveer/v1/account_pb.js";
import { startApp } from "../app.ts";
import type { App } from "../app.ts";
import { createAccounts } from "../accounts/accounts.ts";
import { loadConfig } from "../config/config.ts";
import { remoteClient } from "../server/clients.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openStore } from "../store/open.ts";
import { keyFingerprint } from "../vault/cipher.ts";
import { loadMasterKeys } from "../vault/master-key.ts";
import { createVault } from "../vault/vault.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "../../test/support/store.ts";
import { runCli } from "../../test/support/cli.ts";

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
const PG = process.env.CONVEER_TEST_DATABASE_URL;
const OLD = "42".repeat(32);
const NEW = "5a".repeat(32);
const WRONG = "99".repeat(32);

type Env = Record<string, string>;

/** Runs `conveer ARGS` to its end (no server answers: CONVEER_HTTP_ADDR is port 1). */
async function conveer(args: string[], env: Env): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const c = runCli(args, { CONVEER_HTTP_ADDR: "127.0.0.1:1", ...env });
  const code = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

function accountReq(login: string, password: string): CreateAccountRequest {
  return { $typeName: "conveer.CreateAccountRequest", platform: "mail", login, password, phone: "", additional: {}, labels: {}, status: AccountStatus.UNSPECIFIED } as CreateAccountRequest;
}

/** Six accounts, three sealed under a first data key and three under a second: login → password. */
async function seed(env: Env): Promise<Map<string, string>> {
  const config = loadConfig(env);
  const db = await openStore(config, log);
  try {
    const newId = createIdGenerator();
    const vault = await createVault(db, await loadMasterKeys(config, log, db), newId);
    try {
      const accounts = createAccounts({ db, vault, newId });
      const plain = new Map<string, string>();
      for (let i = 0; i < 6; i++) {
        if (i === 3) await vault.activateNewKey(newId());
        const acc = await accounts.create(accountReq(`mk-${i}`, `secret-${i}`), "test");
        plain.set(acc.id, `secret-${i}`);
      }
      return plain;
    } finally {
      await vault.stop();
    }
  } finally {
    await db.close();
  }
}

/** A server (AccountService) started in this process with `env`. */
function server(env: Env): Promise<App> {
  return startApp({ config: loadConfig({ ...env, CONVEER_HTTP_ADDR: "127.0.0.1:0", ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1:0" }), services: ["account"], log });
}

/** Asserts GetCredentials on `app` answers every seeded password. */
async function readsEvery(app: App, plain: Map<string, string>): Promise<void> {
  const sessions: Http2SessionManager[] = [];
  try {
    const client = remoteClient(AccountService, { addr: `127.0.0.1:${app.ports.account}`, sessions });
    for (const [id, pw] of plain) assert.equal((await client.getCredentials({ accountId: id })).password, pw, `account ${id}`);
  } finally {
    for (const s of sessions) s.abort();
  }
}

/** A server started with `env` reads every credential, then stops. */
async function startsAndReads(env: Env, plain: Map<string, string>): Promise<void> {
  const app = await server(env);
  try {
    await readsEvery(app, plain);
  } finally {
    await app.stop(1000);
  }
}

const REFUSED = /cannot unwrap data key [A-Za-z0-9_-]+: the master key .* is not the one the store's data keys are wrapped by; if the master key was changed \(`conveer keys rotate-master`\), give this host the new one/;

/** The data keys' wrapped values, to show a refused command changed nothing. */
async function wrappedKeys(env: Env): Promise<string[]> {
  const db = await openStore(loadConfig(env), log);
  try {
    return (await db.query<{ wrapped: string }>("SELECT wrapped FROM data_keys ORDER BY id")).rows.map((r) => r.wrapped);
  } finally {
    await db.close();
  }
}

async function auditRows(env: Env): Promise<{ actor: string; target: string; detail: string }[]> {
  const db = await openStore(loadConfig(env), log);
  try {
    return (await db.query<{ actor: string; target: string; detail: string }>("SELECT actor, target, detail FROM audit_log WHERE action = 'keys.rotate_master'")).rows;
  } finally {
    await db.close();
  }
}

const keyText = async (path: string) => (await readFile(path, "utf8")).trim();

describe("keys rotate-master on the embedded store (master.key)", () => {
  let root: string;
  let n = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "conveer-rekey-"));
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });
  /** A fresh data directory with master.key = OLD and seeded accounts. */
  async function store(): Promise<{ dir: string; env: Env; plain: Map<string, string> }> {
    const dir = join(root, `d${n++}`);
    const env = { CONVEER_DATA_DIR: dir };
    await mkdir(dir);
    await writeFile(join(dir, "master.key"), OLD + "\n", { mode: 0o600 });
    return { dir, env, plain: await seed(env) };
  }

  test("--generate: master.key holds a new key (0600), the old one is kept beside it; a server with only the new key reads every credential, with only the old one it refuses; audited", async () => {
    const { dir, env, plain } = await store();
    const r = await conveer(["keys", "rotate-master", "--generate"], env);
    assert.equal(r.code, 0, r.stderr);
    const next = await keyText(join(dir, "master.key"));
    assert.match(next, /^[0-9a-f]{64}$/);
    assert.notEqual(next, OLD);
    assert.equal(r.stdout, `re-wrapped 2 data key(s) under the new master key ${keyFingerprint(Buffer.from(next, "hex"))}\n`);
    assert.equal((await stat(join(dir, "master.key"))).mode & 0o777, 0o600);
    const kept = (await readdir(dir)).filter((f) => f.startsWith("master.key.old-"));
    assert.equal(kept.length, 1, `files: ${await readdir(dir)}`);
    assert.equal(await keyText(join(dir, kept[0])), OLD);
    assert.match(r.stderr, new RegExp(`previous key is kept as .*${kept[0]}`));
    assert.equal(existsSync(join(dir, "master.key.new")), false);

    await startsAndReads(env, plain);
    // Only the old key: as master.key, or as CONVEER_MASTER_KEY.
    await assert.rejects(server({ ...env, CONVEER_MASTER_KEY: OLD }), REFUSED);
    await writeFile(join(dir, "master.key"), OLD + "\n");
    await assert.rejects(server(env), REFUSED);
    await writeFile(join(dir, "master.key"), next + "\n");
    await startsAndReads(env, plain);

    const audit = await auditRows(env);
    assert.equal(audit.length, 1);
    assert.match(audit[0].actor, /^cli@/);
    assert.equal(audit[0].target, keyFingerprint(Buffer.from(next, "hex")));
    assert.equal(audit[0].detail, `2 data keys re-wrapped under master key ${audit[0].target}, from ${keyFingerprint(Buffer.from(OLD, "hex"))}`);
  });

  test("a wrong master.key: rotate-master fails naming it, changes nothing, leaves no new key file; the right key still opens everything", async () => {
    const { dir, env, plain } = await store();
    const before = await wrappedKeys(env);
    await writeFile(join(dir, "master.key"), WRONG + "\n");
    const made = join(root, "gen-wrong.key");
    const r = await conveer(["keys", "rotate-master", "--generate", "--new-key-file", made], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^conveer: cannot unwrap data key .*master\.key.*Nothing was changed: rotate-master unwraps the data keys with the current master key \(.*master\.key\)/m);
    assert.equal(r.stdout, "");
    assert.deepEqual(await wrappedKeys(env), before);
    assert.equal(await keyText(join(dir, "master.key")), WRONG);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("master.key")), ["master.key"]);
    assert.equal(existsSync(made), false, "the key --generate wrote for a refused rotation is removed");
    assert.equal((await auditRows(env)).length, 0);
    await writeFile(join(dir, "master.key"), OLD + "\n");
    await startsAndReads(env, plain);
  });

  test("a crash after the commit, before master.key was replaced: the next start installs master.key.new and reads every credential", async () => {
    const { dir, env, plain } = await store();
    const r = await conveer(["keys", "rotate-master", "--new-key-file", await keyFile("crash-after.key", NEW)], env);
    assert.equal(r.code, 0, r.stderr);
    // The files as they were between the commit and installKeyFile: master.key still the old key, the new one aside.
    for (const f of await readdir(dir)) if (f.startsWith("master.key.old-")) await rm(join(dir, f));
    await writeFile(join(dir, "master.key"), OLD + "\n", { mode: 0o600 });
    await writeFile(join(dir, "master.key.new"), NEW + "\n", { mode: 0o600 });
    await startsAndReads(env, plain);
    assert.equal(await keyText(join(dir, "master.key")), NEW);
    assert.equal(existsSync(join(dir, "master.key.new")), false);
    const kept = (await readdir(dir)).filter((f) => f.startsWith("master.key.old-"));
    assert.equal(kept.length, 1);
    assert.equal(await keyText(join(dir, kept[0])), OLD);
    await startsAndReads(env, plain);
  });

  test("a crash before the commit (master.key.new written, nothing re-wrapped): the next start removes master.key.new and keeps the old key", async () => {
    const { dir, env, plain } = await store();
    await writeFile(join(dir, "master.key.new"), NEW + "\n", { mode: 0o600 });
    await startsAndReads(env, plain);
    assert.equal(await keyText(join(dir, "master.key")), OLD);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("master.key")), ["master.key"]);
  });

  test("refuses while a server holds the data directory, and without a new key (never from the command line)", async () => {
    const { dir, env } = await store();
    const release = await holdDataDirLock(dir);
    try {
      const r = await conveer(["keys", "rotate-master", "--generate"], env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is using the embedded store .*keys rotate-master works on the store directly: stop the server, run it, then start the server again/);
    } finally {
      await release();
    }
    const none = await conveer(["keys", "rotate-master"], env);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /give the new master key: --new-key-file PATH, CONVEER_NEW_MASTER_KEY, or --generate \[--new-key-file PATH\]/);
    const exists = await keyFile("exists.key", NEW);
    const clash = await conveer(["keys", "rotate-master", "--generate", "--new-key-file", exists], env);
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, /already exists: a new key is written only to a file that does not exist yet/);
    assert.equal(await keyText(exists), NEW);
    const same = await conveer(["keys", "rotate-master"], { ...env, CONVEER_NEW_MASTER_KEY: OLD });
    assert.equal(same.code, 1);
    assert.match(same.stderr, /the new master key is the one in use/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("master.key")), ["master.key"]);
  });

  async function keyFile(name: string, hex: string): Promise<string> {
    const path = join(root, name);
    await writeFile(path, hex + "\n", { mode: 0o600 });
    return path;
  }
});

describe("keys rotate-master on PostgreSQL (CONVEER_MASTER_KEY, CONVEER_MASTER_KEY_PREVIOUS)", { skip: PG ? false : "CONVEER_TEST_DATABASE_URL is not set" }, () => {
  const dbs: string[] = [];
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "conveer-rekey-pg-"));
  });
  after(async () => {
    for (const url of dbs) await dropPostgresDatabase(url);
    if (root) await rm(root, { recursive: true, force: true });
  });
  async function store(name: string): Promise<{ url: string; env: (key: string, previous?: string) => Env; plain: Map<string, string> }> {
    const url = await freshPostgresDatabase();
    dbs.push(url);
    const env = (key: string, previous?: string): Env => ({ DATABASE_URL: url, CONVEER_DATA_DIR: join(root, name), CONVEER_MASTER_KEY: key, ...(previous ? { CONVEER_MASTER_KEY_PREVIOUS: previous } : {}) });
    return { url, env, plain: await seed(env(OLD)) };
  }

  test("--generate --new-key-file: the file (0600) holds the new key; a server with only it reads every credential, with only the old one it refuses", async () => {
    const { env, plain } = await store("gen");
    const file = join(root, "new.key");
    const r = await conveer(["keys", "rotate-master", "--generate", "--new-key-file", file], env(OLD));
    assert.equal(r.code, 0, r.stderr);
    const next = await keyText(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(r.stderr, /set CONVEER_MASTER_KEY to the new key on every host/);
    await startsAndReads(env(next), plain);
    await assert.rejects(server(env(OLD)), REFUSED);
    assert.equal((await auditRows(env(next))).length, 1);
  });

  test("the wrong current key: rotate-master fails naming CONVEER_MASTER_KEY and changes nothing", async () => {
    const { env, plain } = await store("wrong");
    const before = await wrappedKeys(env(OLD));
    const r = await conveer(["keys", "rotate-master"], { ...env(WRONG), CONVEER_NEW_MASTER_KEY: NEW });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^conveer: cannot unwrap data key .*Nothing was changed: rotate-master unwraps the data keys with the current master key \(CONVEER_MASTER_KEY\)/m);
    assert.deepEqual(await wrappedKeys(env(OLD)), before);
    await startsAndReads(env(OLD), plain);
    await assert.rejects(server(env(NEW)), REFUSED);
  });

  test("rolling switch: hosts on the old key and on new+previous work before, during and after rotate-master; a data key made meanwhile stays under the old key", async () => {
    const { env, plain } = await store("rolling");
    const oldHost = await server(env(OLD));
    const both = await server(env(NEW, OLD));
    try {
      await readsEvery(both, plain);
      // A key rotation before rotate-master, from a host with new+previous: its data key is wrapped by the
      // old key (the store's), so the host still on the old key opens what is sealed under it.
      const rot = await conveer(["keys", "rotate"], env(NEW, OLD));
      assert.equal(rot.code, 0, rot.stderr);
      const sessions: Http2SessionManager[] = [];
      try {
        const made = await remoteClient(AccountService, { addr: `127.0.0.1:${both.ports.account}`, sessions }).createAccount({ platform: "mail", login: "mk-during", password: "during" });
        plain.set(made.id, "during");
      } finally {
        for (const s of sessions) s.abort();
      }
      await readsEvery(oldHost, plain);

      // Run as a switched host is configured: the new key current, the old one previous.
      const r = await conveer(["keys", "rotate-master"], env(NEW, OLD));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^re-wrapped 3 data key\(s\) under the new master key [0-9a-f]{8}\n$/);
      // The host started on the old key keeps the data keys it unwrapped in memory: it reads and writes on.
      await readsEvery(oldHost, plain);
      await readsEvery(both, plain);
      await startsAndReads(env(NEW), plain);
      await assert.rejects(server(env(OLD)), REFUSED);
      // Running it again (e.g. after a lost answer), either way, succeeds; with only the new key it is refused as in use.
      const again = await conveer(["keys", "rotate-master"], env(NEW, OLD));
      assert.equal(again.code, 0, again.stderr);
      const inUse = await conveer(["keys", "rotate-master"], { ...env(NEW), CONVEER_NEW_MASTER_KEY: NEW });
      assert.equal(inUse.code, 1);
      assert.match(inUse.stderr, /the new master key is the one in use \(CONVEER_MASTER_KEY/);
      const rerun = await conveer(["keys", "rotate-master"], { ...env(OLD), CONVEER_NEW_MASTER_KEY: NEW });
      assert.equal(rerun.code, 0, rerun.stderr);
      await startsAndReads(env(NEW), plain);
      // The limit: a data key made after rotate-master is wrapped by the new key only, so a host still
      // on the old key cannot open what is re-encrypted under it (restart every host before `keys rotate`).
      const late = await conveer(["keys", "rotate"], env(NEW));
      assert.equal(late.code, 0, late.stderr);
      await readsEvery(both, plain);
      await assert.rejects(readsEvery(oldHost, plain), (err: Error) => {
        assert.match(err.message, /internal error|cannot unwrap/i);
        return true;
      });
    } finally {
      await oldHost.stop(1000);
      await both.stop(1000);
    }
  });
});
