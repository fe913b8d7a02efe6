/**
 * The `conveer` CLI as a child process: imports against a running system, the admin commands
 * (token, audit, keys rotate) on the store itself, and register, warm list, warm watch (its
 * connection state through a stopped server and a cut connection, each task's end), an export
 * with a failed item and --server against an in-process system.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { CreateAccountRequest } from "../gen/conveer/v1/account_pb.js";
import { startApp } from "../app.ts";
import { loadConfig } from "../config/config.ts";
import { createAccounts } from "../accounts/accounts.ts";
import { remoteClient } from "../server/clients.ts";
import { createIdGenerator } from "../store/ids.ts";
import { openPostgres } from "../store/postgres.ts";
import { createVault } from "../vault/vault.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import { startHttpConnectProxy } from "../../test/support/local-proxies.ts";
import { WarmingService, WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import type { LocalProxy } from "../../test/support/local-proxies.ts";
import type { TestSystem } from "../../test/support/system.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NODE = join(ROOT, "node_modules/.bin/node");
const PG = process.env.CONVEER_TEST_DATABASE_URL;
const NEEDS_PG = PG ? false : "CONVEER_TEST_DATABASE_URL is not set: the CLI and a server only share a store through PostgreSQL";
const MASTER_HEX = "42".repeat(32);

type Run = { code: number | null; stdout: string; stderr: string };

/** Runs `conveer ARGS` with only the given environment (plus PATH/HOME); kills it after timeoutMs. */
function conveer(args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, ["src/cli/main.ts", ...args], {
      cwd: ROOT,
      // CONVEER_HTTP_ADDR: where the admin commands look for a server; nothing listens on port 1 unless a test names another.
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", CONVEER_HTTP_ADDR: "127.0.0.1:1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`conveer ${args.join(" ")} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The FILE.errors report as line number → message. */
async function errorReport(path: string): Promise<Map<number, string>> {
  const text = await readFile(`${path}.errors`, "utf8");
  const out = new Map<number, string>();
  for (const l of text.split("\n").filter(Boolean)) {
    const m = /^line (\d+): (.*)$/.exec(l);
    assert.ok(m, `malformed report line ${JSON.stringify(l)}`);
    assert.ok(!out.has(Number(m[1])), `line ${m[1]} reported twice`);
    out.set(Number(m[1]), m[2]);
  }
  return out;
}

/** Asserts the report names exactly the expected lines, each with a message matching its pattern. */
function assertReport(report: Map<number, string>, expected: Map<number, RegExp>): void {
  assert.deepEqual([...report.keys()].sort((a, b) => a - b), [...expected.keys()].sort((a, b) => a - b));
  for (const [line, re] of expected) assert.match(report.get(line)!, re, `line ${line}`);
}

function accountReq(platform: string, login: string, password: string): CreateAccountRequest {
  return { $typeName: "conveer.CreateAccountRequest", platform, login, password, phone: "", additional: {}, labels: {}, status: AccountStatus.UNSPECIFIED } as CreateAccountRequest;
}

describe("conveer accounts import / proxies import against a running system", () => {
  let sys: TestSystem;
  let dir: string;
  let env: Record<string, string>;
  before(async () => {
    sys = await startTestSystem("pglite", { services: ["account", "proxy"], env: { CONVEER_PROXY_ALLOW_PRIVATE: "true" } });
    dir = await mkdtemp(join(tmpdir(), "conveer-cli-"));
    env = { CONVEER_DATA_DIR: join(dir, "data"), ACCOUNT_SERVICE_GRPC_ADDR: sys.addr("account"), PROXY_SERVICE_GRPC_ADDR: sys.addr("proxy") };
  });
  after(async () => {
    await sys?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("CSV: 1,000 good lines kept, bad ones reported in FILE.errors with their line numbers", async () => {
    // Line 1 is the header; data lines are numbered from 2.
    const lines = ["platform,login,password,phone"];
    const bad = new Map<number, RegExp>();
    const good = (i: number) => `vk,csv-user-${i},pw-${i},+7999${String(i).padStart(7, "0")}`;
    for (let i = 0; i < 1000; i++) {
      lines.push(good(i));
      if (i === 10) (lines.push("myspace,csv-bad-platform,pw,"), bad.set(lines.length, /platform "myspace" is not one of vk, telegram, mail, max/));
      if (i === 400) (lines.push("vk,csv-no-password,,"), bad.set(lines.length, /password is empty/));
      if (i === 650) (lines.push("vk,csv-bad-phone,pw,12345"), bad.set(lines.length, /phone "12345" is not in E\.164 form/));
      if (i === 700) (lines.push("vk,csv-user-5,another-pw,"), bad.set(lines.length, /already exists/));
    }
    const file = join(dir, "accounts.csv");
    await writeFile(file, lines.join("\n") + "\n");
    const r = await conveer(["accounts", "import", file], env);
    // Some lines failed: a script sees it in the exit code (issue 9), the good lines are kept.
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, `imported 1000, failed 4 (see ${file}.errors)\n`);
    assertReport(await errorReport(file), bad);
    const all = await sys.accounts.listAccounts({ platform: "vk" });
    assert.equal(all.totalCount, 1000n);
    // The duplicate did not overwrite the first account's credentials.
    const page = await sys.accounts.listAccounts({ platform: "vk", pageSize: 1000 });
    const first = page.accounts.find((a) => a.login === "csv-user-5");
    assert.ok(first, "csv-user-5 was not imported");
    const cred = await sys.accounts.getCredentials({ accountId: first.id });
    assert.deepEqual([cred.password, cred.phone], ["pw-5", "+79990000005"]);
  });

  test("JSON Lines: same, with a line that is not JSON", async () => {
    const lines: string[] = [];
    const bad = new Map<number, RegExp>();
    for (let i = 0; i < 1000; i++) {
      lines.push(JSON.stringify({ platform: "telegram", login: `jl-user-${i}`, password: `pw-${i}`, labels: { batch: "jl" } }));
      if (i === 0) (lines.push(JSON.stringify({ platform: "icq", login: "jl-bad-platform", password: "pw" })), bad.set(lines.length, /platform "icq" is not one of/));
      if (i === 200) (lines.push(JSON.stringify({ platform: "telegram", login: "jl-no-password" })), bad.set(lines.length, /password is empty/));
      if (i === 500) (lines.push(JSON.stringify({ platform: "telegram", login: "jl-bad-phone", password: "pw", phone: "8-999" })), bad.set(lines.length, /phone "8-999" is not in E\.164 form/));
      if (i === 998) (lines.push(JSON.stringify({ platform: "telegram", login: "jl-user-3", password: "dup" })), bad.set(lines.length, /already exists/));
      if (i === 999) (lines.push('{"platform": "telegram", oops'), bad.set(lines.length, /not valid JSON/));
    }
    const file = join(dir, "accounts.jsonl");
    await writeFile(file, lines.join("\n") + "\n");
    const r = await conveer(["accounts", "import", file], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, `imported 1000, failed 5 (see ${file}.errors)\n`);
    assertReport(await errorReport(file), bad);
    assert.equal((await sys.accounts.listAccounts({ platform: "telegram" })).totalCount, 1000n);
    assert.equal((await sys.accounts.listAccounts({})).totalCount, 2000n);
  });

  test("a clean file writes no FILE.errors", async () => {
    const file = join(dir, "clean.csv");
    await writeFile(file, "platform,login,password\nmail,clean-1,pw\nmax,clean-2,pw\n");
    const r = await conveer(["accounts", "import", file], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "imported 2, failed 0\n");
    await assert.rejects(readFile(`${file}.errors`), { code: "ENOENT" });
  });

  test("proxies import: good URLs added, a bad scheme and a duplicate reported without echoing passwords", async () => {
    const file = join(dir, "proxies.txt");
    await writeFile(
      file,
      ["# our pool", "http://127.0.0.1:30001", "socks5://user:s3cretpw@127.0.0.1:30002", "ftp://127.0.0.1:30003", "http://127.0.0.1:30001", "", "https://10.0.0.1:3128"].join("\n") + "\n",
    );
    const r = await conveer(["proxies", "import", file], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, `imported 3, failed 2 (see ${file}.errors)\n`);
    assertReport(
      await errorReport(file),
      new Map([
        [4, /unsupported scheme "ftp"/],
        [5, /already in the pool/],
      ]),
    );
    const pool = await sys.proxies.listProxies({});
    assert.equal(pool.totalCount, 3n);
    assert.deepEqual(pool.proxies.map((p) => `${p.protocol}://${p.host}:${p.port}`).sort(), ["http://127.0.0.1:30001", "https://10.0.0.1:3128", "socks5://127.0.0.1:30002"]);
    assert.ok(!(await readFile(`${file}.errors`, "utf8")).includes("s3cretpw"));
  });

  test("a server that is not there: exits 1 with a message naming the problem", async () => {
    const file = join(dir, "one.csv");
    await writeFile(file, "platform,login,password\nvk,nobody,pw\n");
    const r = await conveer(["accounts", "import", file], { ...env, ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1:1" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^conveer: .*(ECONNREFUSED|unavailable|connect)/im);
  });
});

describe("conveer token on an embedded (PGlite) data directory, no server running", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "conveer-cli-token-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("token create prints a cv_ token once; token list shows it without the secret; a second one of the same name is refused", async () => {
    const env = { CONVEER_DATA_DIR: dir };
    const created = await conveer(["token", "create", "--name", "admin", "--scopes", "*"], env);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^cv_[A-Za-z0-9_-]{32}\n$/);
    assert.match(created.stderr, /only time its secret is shown/);
    const secret = created.stdout.trim();

    const listed = await conveer(["token", "list"], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stderr, /no server answers at http:\/\/127\.0\.0\.1:1; working on the store directly/);
    assert.match(listed.stdout, /^NAME +SCOPES +CREATED +STATE\nadmin +\* +\d{4}-\d\d-\d\dT\S+ +active\n$/);
    assert.ok(!listed.stdout.includes(secret.slice(3)), "token list printed the secret");

    const again = await conveer(["token", "create", "--name", "admin", "--scopes", "*"], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /conveer: a token named "admin" already exists/);

    const revoked = await conveer(["token", "revoke", "admin"], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout, "revoked admin\n");
  });

  test("refuses while another live process holds the data directory", async () => {
    const release = await holdDataDirLock(dir);
    try {
      const r = await conveer(["token", "list"], { CONVEER_DATA_DIR: dir });
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`another conveer process \\(pid ${process.pid}\\)`));
      assert.match(r.stderr, /point the CLI at it with --server http:\/\/HOST:PORT \(nothing answered at http:\/\/127\.0\.0\.1:1\)/);
    } finally {
      await release();
    }
  });
});

describe("conveer audit and keys rotate on a shared PostgreSQL store", { skip: NEEDS_PG }, () => {
  const dbs: string[] = [];
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "conveer-cli-pg-"));
  });
  after(async () => {
    for (const url of dbs) await dropPostgresDatabase(url);
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const freshDb = async () => {
    const url = await freshPostgresDatabase();
    dbs.push(url);
    return url;
  };

  test("audit lists the creates, GetCredentials reads and deletes a running server recorded, through that server", async () => {
    const url = await freshDb();
    const config = loadConfig({
      DATABASE_URL: url,
      CONVEER_MASTER_KEY: MASTER_HEX,
      CONVEER_DATA_DIR: join(dir, "audit"),
      CONVEER_HTTP_ADDR: "127.0.0.1:0",
      ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1:0",
    });
    const app = await startApp({ config, services: ["account"], log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }) });
    const sessions: Http2SessionManager[] = [];
    try {
      const client = remoteClient(AccountService, { addr: `127.0.0.1:${app.ports.account}`, sessions });
      const read = await client.createAccount({ platform: "vk", login: "audited", password: "pw" });
      const other = await client.createAccount({ platform: "vk", login: "other", password: "pw" });
      await client.getCredentials({ accountId: read.id });
      await client.getCredentials({ accountId: other.id });
      await client.getCredentials({ accountId: read.id });

      // Through the running server's HTTP port (AdminService), not the store.
      const env = { DATABASE_URL: url, CONVEER_DATA_DIR: join(dir, "audit-cli"), CONVEER_HTTP_ADDR: `127.0.0.1:${app.httpPort}` };
      const table = await conveer(["audit", "--action", "credentials.read"], env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stderr, /through the server at http:\/\/127\.0\.0\.1:\d+/);
      const rows = table.stdout.trimEnd().split("\n");
      assert.match(rows[0], /^TIME +ACTOR +ACTION +ACCOUNT +TARGET +DETAIL +PEER$/);
      for (const r of rows.slice(1)) assert.match(r, /^\d{4}-\d\d-\d\dT\S+ +open-mode +credentials\.read +[0-9a-f]{24} +\S*127\.0\.0\.1\S*$/);
      const json = async (args: string[]) => {
        const r = await conveer([...args, "--output", "json"], env);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trimEnd().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { actor: string; action: string; accountId: string; detail: string });
      };
      assert.deepEqual(
        (await json(["audit"])).map((e) => [e.actor, e.action, e.accountId]),
        [
          ["open-mode", "credentials.read", read.id],
          ["open-mode", "credentials.read", other.id],
          ["open-mode", "credentials.read", read.id],
          ["open-mode", "account.create", other.id],
          ["open-mode", "account.create", read.id],
        ],
      );

      // A delete is audited too, newest first, with its reason.
      await client.deleteAccount({ accountId: other.id, reason: "gone" });
      const one = await json(["audit", "--account", other.id]);
      assert.deepEqual(one.map((e) => [e.action, e.detail]), [["account.delete", "gone"], ["credentials.read", ""], ["account.create", 'vk login "other", ACTIVE']]);
      assert.equal((await json(["audit", "--limit", "1"])).length, 1);
    } finally {
      for (const s of sessions) s.abort();
      await app.stop(1000);
    }
  });

  test("bootstrap beside a running CONVEER_AUTH=tokens server on PostgreSQL: with no token the first one is made on the store directly; then through the server", async () => {
    const url = await freshDb();
    const config = loadConfig({ DATABASE_URL: url, CONVEER_MASTER_KEY: MASTER_HEX, CONVEER_AUTH: "tokens", CONVEER_DATA_DIR: join(dir, "boot"), CONVEER_HTTP_ADDR: "127.0.0.1:0", ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1:0" });
    const app = await startApp({ config, services: ["account"], log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }) });
    try {
      const env = { DATABASE_URL: url, CONVEER_DATA_DIR: join(dir, "boot-cli"), CONVEER_HTTP_ADDR: `127.0.0.1:${app.httpPort}` };
      const first = await conveer(["token", "create", "--name", "first", "--scopes", "*"], env);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stderr, /needs a token and CONVEER_TOKEN is not set; working on the PostgreSQL store directly/);
      const token = first.stdout.trim();
      const listed = await conveer(["token", "list", "--output", "csv"], { ...env, CONVEER_TOKEN: token });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stderr, /through the server at/);
      assert.match(listed.stdout, /^NAME,SCOPES,CREATED,STATE\nfirst,\*,\S+,active\n$/);
      const bogus = await conveer(["audit"], { ...env, CONVEER_TOKEN: "cv_nope" });
      assert.equal(bogus.code, 1);
      assert.match(bogus.stderr, /conveer: the bearer token is unknown or revoked/);
    } finally {
      await app.stop(1000);
    }
  });

  /** A fresh database with accounts and a proxy password sealed under its first key. */
  async function seeded(n: number): Promise<{ url: string; oldKey: string; plain: Map<string, string> }> {
    const url = await freshDb();
    const db = openPostgres({ url, max: 4 });
    const newId = createIdGenerator();
    const vault = await createVault(db, Buffer.from(MASTER_HEX, "hex"), newId);
    try {
      const accounts = createAccounts({ db, vault, newId });
      const plain = new Map<string, string>();
      for (let i = 0; i < n; i++) {
        const acc = await accounts.create(accountReq("mail", `rot-${i}`, `secret-${i}`), "test");
        plain.set(acc.id, `secret-${i}`);
      }
      const proxyId = newId();
      const { sealed, keyId } = vault.seal("proxy-pass", `proxy:${proxyId}`);
      await db.query("INSERT INTO proxies (id, protocol, host, port, username, password_sealed, key_id) VALUES ($1, 'socks5', '127.0.0.1', 1080, 'u', $2, $3)", [proxyId, sealed, keyId]);
      plain.set(proxyId, "proxy-pass");
      return { url, oldKey: vault.activeKeyId(), plain };
    } finally {
      await vault.stop();
      await db.close();
    }
  }

  test("keys rotate re-encrypts every secret under a new key, in batches, and prints it", async () => {
    const { url, oldKey, plain } = await seeded(25);
    const r = await conveer(["keys", "rotate", "--batch", "4"], { DATABASE_URL: url, CONVEER_MASTER_KEY: MASTER_HEX, CONVEER_DATA_DIR: join(dir, "rotate") });
    assert.equal(r.code, 0, r.stderr);
    const m = /^data key ([A-Za-z0-9_-]+) is active; 26 values re-encrypted\n$/.exec(r.stdout);
    assert.ok(m, `unexpected output ${JSON.stringify(r.stdout)}`);
    const newKey = m[1];
    assert.notEqual(newKey, oldKey);

    const db = openPostgres({ url, max: 2 });
    const vault = await createVault(db, Buffer.from(MASTER_HEX, "hex"), createIdGenerator());
    try {
      const active = await db.query<{ id: string }>("SELECT id FROM data_keys WHERE active");
      assert.deepEqual(active.rows, [{ id: newKey }]);
      const keyIds = await db.query<{ key_id: string }>("SELECT key_id FROM accounts UNION SELECT key_id FROM proxies");
      assert.deepEqual(keyIds.rows, [{ key_id: newKey }]);
      const accs = await db.query<{ id: string; secrets: string }>("SELECT id, secrets FROM accounts");
      for (const a of accs.rows) assert.equal((JSON.parse(await vault.open(a.secrets, `account:${a.id}`)) as { password: string }).password, plain.get(a.id));
      const px = await db.query<{ id: string; password_sealed: string }>("SELECT id, password_sealed FROM proxies");
      for (const p of px.rows) assert.equal(await vault.open(p.password_sealed, `proxy:${p.id}`), plain.get(p.id));
    } finally {
      await vault.stop();
      await db.close();
    }
  });

  test("keys rotate with the wrong master key fails clearly and leaves the store usable", async () => {
    const { url, oldKey } = await seeded(3);
    const r = await conveer(["keys", "rotate"], { DATABASE_URL: url, CONVEER_MASTER_KEY: "99".repeat(32), CONVEER_DATA_DIR: join(dir, "rotate-wrong") });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^conveer: cannot unwrap data key .*master key/m);
    const db = openPostgres({ url, max: 2 });
    try {
      // No key wrapped under the wrong master may have become active: replicas with the right one must still start.
      const keys = await db.query<{ id: string; active: boolean }>("SELECT id, active FROM data_keys");
      assert.deepEqual(keys.rows, [{ id: oldKey, active: true }]);
      const vault = await createVault(db, Buffer.from(MASTER_HEX, "hex"), createIdGenerator());
      await vault.stop();
    } finally {
      await db.close();
    }
  });

  test("keys rotate rejects a batch size that is not a positive integer", async () => {
    const url = await freshDb();
    const r = await conveer(["keys", "rotate", "--batch", "lots"], { DATABASE_URL: url, CONVEER_MASTER_KEY: MASTER_HEX, CONVEER_DATA_DIR: join(dir, "rotate-batch") });
    assert.equal(r.code, 2, "bad usage");
    assert.match(r.stderr, /--batch/);
    const keys = await openPostgresCount(url);
    assert.equal(keys, 0, "a rejected command must not have created a key");
  });
});

async function openPostgresCount(url: string): Promise<number> {
  const db = openPostgres({ url, max: 1 });
  try {
    return (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM data_keys")).rows[0].n;
  } finally {
    await db.close();
  }
}

describe("conveer register: account ids, JSON lines, the free-slot warning and exit codes", () => {
  let sys: TestSystem;
  let env: Record<string, string>;
  let proxy: LocalProxy | undefined;
  before(async () => {
    sys = await startTestSystem("pglite", { env: { CONVEER_PROXY_ALLOW_PRIVATE: "true" } });
    env = Object.fromEntries((["account", "proxy", "vk"] as const).map((s) => [`${s.toUpperCase()}_SERVICE_GRPC_ADDR`, sys.addr(s)]));
  });
  after(async () => {
    await sys?.stop();
    await proxy?.close();
  });

  test("--version prints the package version; bad usage exits 2", async () => {
    const v = await conveer(["--version"], env);
    assert.deepEqual([v.code, v.stdout], [0, `${JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).version}\n`]);
    const bad = await conveer(["register", "--platform", "nope"], env);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--platform.*must be one of vk/);
  });

  test("with no free proxy slot it says so first, every result fails at allocate_proxy, and it exits 1", async () => {
    const r = await conveer(["register", "--platform", "vk", "--count", "2", "--output", "json"], env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the proxy pool has 0 free slot\(s\) for 2 registration\(s\).*npx conveer proxies import FILE/);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { success: boolean; failedStep: string; accountId: string; registrationId: string });
    assert.equal(lines.length, 2);
    for (const l of lines) assert.deepEqual([l.success, l.failedStep, typeof l.registrationId], [false, "allocate_proxy", "string"]);
  });

  test("registered accounts are printed: one JSON object per line, or their ids after the summary", async () => {
    proxy = await startHttpConnectProxy();
    const added = await sys.proxies.addProxies({ proxies: [{ url: proxy.url, capacity: 10 }] });
    assert.ok(added.results[0].proxyId, added.results[0].error);
    const json = await conveer(["register", "--platform", "vk", "--count", "2", "--output", "json"], env, 60_000);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as { success: boolean; accountId: string; error: string });
    assert.equal(lines.length, 2);
    for (const l of lines) assert.ok(l.success && /^[0-9a-f]{24}$/.test(l.accountId), JSON.stringify(l));
    // The run's batch id is printed first; its registrations are listed by it, and only they.
    const batch = /^batch (vk-\d{8}T\d{4}-[0-9a-f]{4}): `npx conveer registrations list --platform vk --batch \1`/m.exec(json.stderr)?.[1];
    assert.ok(batch, json.stderr);
    const listed = await conveer(["registrations", "list", "--platform", "vk", "--batch", batch, "--output", "json"], env);
    assert.equal(listed.code, 0, listed.stderr);
    const regs = listed.stdout.trim().split("\n").map((l) => JSON.parse(l) as { accountId: string; batchId: string; state: string });
    assert.deepEqual(new Set(regs.map((r) => r.accountId)), new Set(lines.map((l) => l.accountId)));
    assert.ok(regs.every((r) => r.batchId === batch && r.state === "REGISTRATION_STATE_SUCCEEDED"), listed.stdout);
    const table = await conveer(["register", "--platform", "vk", "--count", "1", "--batch", "mine.1"], env, 60_000);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /succeeded 1, failed 0\ncreated accounts:\n {2}[0-9a-f]{24}\n$/);
    assert.match(table.stderr, /^batch mine\.1: /m);
    const mine = await conveer(["registrations", "list", "--platform", "vk", "--batch", "mine.1", "--output", "csv"], env);
    assert.equal(mine.stdout.trimEnd().split("\n").length, 2, mine.stdout);
    assert.match(mine.stdout, /,mine\.1\n$/);
  });

  test("warm list: every task newest first as a table, JSON Lines or CSV, with filters", async () => {
    const [accountId] = (await sys.accounts.listAccounts({ platform: "vk", status: AccountStatus.ACTIVE, pageSize: 1 })).accounts.map((a) => a.id);
    const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
    const task = await warming.startWarming({ accountId, scenarioId: "gentle" });
    const wenv = { ...env, WARMING_SERVICE_GRPC_ADDR: sys.addr("warming") };
    const json = await conveer(["warm", "list", "--output", "json"], wenv);
    assert.equal(json.code, 0, json.stderr);
    const rows = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as { id: string; accountId: string; accountLogin: string; status: string; platform: string });
    assert.deepEqual(rows.map((r) => [r.id, r.accountId, r.status, r.platform]), [[task.id, accountId, "WARMING_STATUS_RUNNING", "vk"]]);
    assert.ok(rows[0].accountLogin, "the account's login is shown");
    const csv = await conveer(["warm", "list", "--output", "csv", "--platform", "vk"], wenv);
    assert.match(csv.stdout, new RegExp(`^task,account,login,platform,scenario,status,progress,day,done,failed\n${task.id},${accountId},`));
    const none = await conveer(["warm", "list", "--status", "completed"], wenv);
    assert.equal(none.stdout, "task  account  login  platform  scenario  status  progress  day  done  failed\n");
    const bad = await conveer(["warm", "list", "--status", "sleeping"], wenv);
    assert.equal(bad.code, 2);
  });

  test("warm watch prints its connection state (a stopped server at once, each retry, a connection) and each task's end with its login", async () => {
    const watch = (wenv: Record<string, string>, until: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(NODE, ["src/cli/main.ts", "warm", "watch", "--all"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", ...wenv }, stdio: ["ignore", "pipe", "pipe"] });
        let err = "";
        const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error(`no ${until} within 15 s; stderr: ${err}`))), 15_000);
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          if (until.test(err)) (clearTimeout(timer), child.kill("SIGINT"), resolve(err));
        });
      });
    const stopped = await watch({ WARMING_SERVICE_GRPC_ADDR: "127.0.0.1:1" }, /attempt 2\)/);
    assert.match(stopped, /^cannot reach the warming service \(Unavailable: .*\); retrying in 1 s \(attempt 1\)\n/);
    const live = await watch({ WARMING_SERVICE_GRPC_ADDR: sys.addr("warming") }, /connected; watching \d+ task\(s\)\n/);
    assert.doesNotMatch(live, /cannot reach/);

    // Ends are lines naming the login: a task that ended before the watch (--all), and one ending while it runs.
    const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
    const [before] = (await warming.listWarmingTasks({ status: WarmingStatus.RUNNING })).tasks;
    await warming.stopWarming({ taskId: before.id, reason: "ended before the watch" });
    const idle = (await sys.accounts.listAccounts({ platform: "vk", status: AccountStatus.ACTIVE })).accounts.find((a) => a.id !== before.accountId)!;
    const during = await warming.startWarming({ accountId: idle.id, scenarioId: "gentle" });
    const label = (t: { accountLogin: string; id: string }) => `${t.accountLogin} (${t.id.slice(-6)})`;
    const ended = await new Promise<string>((resolve, reject) => {
      const child = spawn(NODE, ["src/cli/main.ts", "warm", "watch", "--all"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", WARMING_SERVICE_GRPC_ADDR: sys.addr("warming") }, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      let stopped = false;
      const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error(`no end line within 15 s; stderr: ${err}`))), 15_000);
      child.stderr.on("data", (d: Buffer) => {
        err += d.toString();
        if (!stopped && /connected; watching/.test(err)) {
          stopped = true;
          warming.stopWarming({ taskId: during.id, reason: "stopped during the watch" }).catch(reject);
        }
        if (err.includes(`${label({ accountLogin: idle.login, id: during.id })}: STOPPED (stopped during the watch)`)) (clearTimeout(timer), child.kill("SIGINT"), resolve(err));
      });
    });
    assert.ok(ended.includes(`${label(before)}: STOPPED\n`), ended);
    assert.ok(ended.indexOf(`${label(before)}: STOPPED`) < ended.indexOf("connected; watching"), "the earlier end is shown as the watch starts");
  });

  test("warm watch through a connection that drops: 'disconnected' at once, each retry while nothing answers, then 'reconnected' resuming after the last event", async () => {
    // A TCP relay in front of the warming port, cut (its sockets destroyed, its port closed) and put back.
    const target = Number(sys.addr("warming").split(":")[1]);
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((inbound) => {
      const out = net.connect(target, "127.0.0.1");
      for (const s of [inbound, out]) (sockets.add(s), s.on("close", () => sockets.delete(s)), s.on("error", () => {}));
      inbound.pipe(out).pipe(inbound);
    });
    await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
    const port = (relay.address() as net.AddressInfo).port;
    const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
    const idle = (await sys.accounts.listAccounts({ platform: "vk", status: AccountStatus.ACTIVE })).accounts[0];
    const child = spawn(NODE, ["src/cli/main.ts", "warm", "watch"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", WARMING_SERVICE_GRPC_ADDR: `127.0.0.1:${port}` }, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const until = async (re: RegExp, what: string) => {
      for (const end = Date.now() + 15_000; !re.test(err); await new Promise((r) => setTimeout(r, 50))) {
        if (Date.now() > end) throw new Error(`no ${what} within 15 s; stderr: ${err}`);
      }
    };
    try {
      await until(/connected; watching/, "connection");
      const task = await warming.startWarming({ accountId: idle.id, scenarioId: "gentle" });
      // Its start reaches the watch as an event (the reconnect below resumes after an event id, not "(start)").
      await new Promise((r) => setTimeout(r, 1000));
      const cutAt = err.length;
      await new Promise<void>((r) => (relay.close(() => r()), sockets.forEach((s) => s.destroy())));
      const cutTime = Date.now();
      await until(/disconnected \(\w+: .*\); retrying in 1 s \(attempt 1\)\n/, "disconnect line");
      assert.ok(Date.now() - cutTime < 5000, `the disconnect was printed ${Date.now() - cutTime} ms after the cut`);
      await until(/cannot reach the warming service \(Unavailable: .*\); retrying in 1 s \(attempt 2\)\n/, "retry line");
      // The task ends while the watch is cut off; back on the same port, it resumes and shows the end.
      await warming.stopWarming({ taskId: task.id, reason: "while cut off" });
      await new Promise<void>((r) => relay.listen(port, "127.0.0.1", r));
      await until(/reconnected; resuming after event \d+\n/, "reconnect line");
      await until(new RegExp(`\\(${task.id.slice(-6)}\\): STOPPED \\(while cut off\\)`), "the end seen after the reconnect");
      assert.ok(err.indexOf("disconnected") >= cutAt && err.indexOf("reconnected") > err.indexOf("attempt 2"), err);
    } finally {
      child.kill("SIGINT");
      relay.close();
      sockets.forEach((s) => s.destroy());
    }
  });

  test("accounts export --with-credentials: an account whose credentials cannot be read is reported, the others exported, exit 1", async () => {
    const made = await Promise.all(["exp_a", "exp_b", "exp_c"].map((login) => sys.accounts.createAccount({ platform: "max", login, password: `pw-${login}` })));
    // Its sealed secrets damaged in the store: GetCredentials fails for this one account only.
    await sys.db.query("UPDATE accounts SET secrets = 'not-sealed' WHERE id = $1", [made[1].id]);
    const r = await conveer(["accounts", "export", "--format", "json", "--with-credentials", "--login-prefix", "exp_"], env);
    assert.equal(r.code, 1, r.stderr);
    const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { id: string; credentials: { password: string } });
    assert.deepEqual(rows.map((x) => [x.id, x.credentials.password]), [[made[0].id, "pw-exp_a"], [made[2].id, "pw-exp_c"]]);
    assert.match(r.stderr, new RegExp(`^account ${made[1].id}: `, "m"));
    assert.match(r.stderr, /exported 2 account\(s\), failed 1/);
  });

  test("--server (or CONVEER_SERVER) sends every call to the HTTP port over Connect, no gRPC address needed", async () => {
    const server = `http://127.0.0.1:${sys.app.httpPort}`;
    const viaFlag = await conveer(["--server", server, "warm", "list", "--output", "json"], {});
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.ok(viaFlag.stdout.trim().split("\n").every((l) => (JSON.parse(l) as { status: string }).status.startsWith("WARMING_STATUS_")));
    const viaEnv = await conveer(["register", "--platform", "vk", "--count", "1", "--output", "json"], { CONVEER_SERVER: server }, 60_000);
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal((JSON.parse(viaEnv.stdout) as { success: boolean }).success, true);
    const bad = await conveer(["--server", "127.0.0.1:8080", "warm", "list"], {});
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--server.*must be an http\(s\) URL/);
  });
});
