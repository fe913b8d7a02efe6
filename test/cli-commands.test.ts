/**
 * The operator's CLI against a real `conveer start` (child process, embedded store, tokens on):
 * accounts list|get|history|delete|export, proxies list|add|remove|check, registrations
 * list|show, sms activations|balance, through gRPC and through Connect (--server). JSON output is
 * parsed; CSV is read; exit codes: 2 for bad usage, 1 when an item failed; an export's credentials
 * reads in the audit log; `warm watch` with a refused token.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

type Json = Record<string, unknown>;
const jsonLines = (s: string): Json[] => s.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Json);

describe("conveer accounts|proxies|registrations|sms against a running server", () => {
  let dataDir: string;
  let env: Record<string, string>;
  let http: number;
  let admin: string;
  let reader: string;
  let server: Cli;
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];

  /** Runs the CLI to its end with the admin token (unless `extra` says otherwise). */
  const conveer = async (args: string[], extra: Record<string, string> = {}) => {
    const c = runCli(args, { ...env, CONVEER_TOKEN: admin, ...extra });
    children.push(c);
    const code = await c.exited;
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "conveer-clicmd-"));
    const sys = await systemEnv(join(dataDir, "data"), { CONVEER_MASTER_KEY: "45".repeat(32), CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_DB_POOL_SIZE: "12", CONVEER_LOG_LEVEL: "warn" });
    env = sys.env;
    http = sys.http;
    for (const [name, scopes] of [["ops", "*"], ["reader", "accounts:read"]]) {
      const t = runCli(["token", "create", "--name", name, "--scopes", scopes], env);
      assert.equal(await t.exited, 0, t.stderr());
      if (name === "ops") admin = t.stdout().trim();
      else reader = t.stdout().trim();
    }
    server = runCli(["start"], env);
    children.push(server);
    await waitHealthy(server, http);
    const client = remoteClient(AccountService, { addr: sys.addr("account"), token: admin, sessions });
    const accounts = Array.from({ length: 250 }, (_, i) => ({
      platform: i % 2 ? "vk" : "telegram",
      login: `cli-${String(i).padStart(3, "0")}`,
      password: `pw-${i}`,
      phone: i < 3 ? `+7999000000${i}` : "",
      labels: { team: i < 40 ? "red" : "blue", batch: "b1" },
    }));
    const r = await client.importAccounts({ accounts });
    assert.equal(r.imported, 250, JSON.stringify(r.results.find((x) => x.error)));
  });
  after(async () => {
    for (const s of sessions) s.abort();
    if (server?.running()) await terminate(server);
    await killAll(children);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test("accounts list: JSON Lines with the proto JSON names, filters, every page, --limit; the same over --server (Connect)", async () => {
    const all = await conveer(["accounts", "list", "--output", "json"]);
    assert.equal(all.code, 0, all.stderr);
    const rows = jsonLines(all.stdout);
    assert.equal(rows.length, 250);
    assert.deepEqual(Object.keys(rows[0]).sort(), ["createdAt", "hasPhone", "id", "labels", "login", "platform", "status", "statusReason", "updatedAt"]);
    assert.equal(rows[0].status, "ACCOUNT_STATUS_ACTIVE");
    assert.equal(new Set(rows.map((r) => r.id)).size, 250);

    const red = await conveer(["accounts", "list", "--output", "json", "--label", "team=red", "--label", "batch=b1", "--platform", "vk", "--status", "active"]);
    assert.equal(red.code, 0, red.stderr);
    const redRows = jsonLines(red.stdout);
    assert.equal(redRows.length, 20);
    assert.ok(redRows.every((r) => r.platform === "vk" && (r.labels as Json).team === "red"));

    const prefixed = await conveer(["--server", `http://127.0.0.1:${http}`, "accounts", "list", "--output", "json", "--login-prefix", "cli-24"]);
    assert.equal(prefixed.code, 0, prefixed.stderr);
    assert.deepEqual(jsonLines(prefixed.stdout).map((r) => r.login), ["cli-240", "cli-241", "cli-242", "cli-243", "cli-244", "cli-245", "cli-246", "cli-247", "cli-248", "cli-249"]);

    const limited = await conveer(["accounts", "list", "--limit", "7", "--output", "csv"], { CONVEER_SERVER: `http://127.0.0.1:${http}` });
    assert.equal(limited.code, 0, limited.stderr);
    const lines = limited.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "id,platform,login,status,reason,labels,created");
    assert.equal(lines.length, 8);
    assert.match(lines[1], /^[0-9a-f]{24},telegram,cli-000,ACTIVE,created,batch=b1;team=red,\d{4}-/);
  });

  test("accounts export: 250 accounts in pages of 100 with credentials (JSON and CSV to a 0600 file)", async () => {
    const json = await conveer(["accounts", "export", "--format", "json", "--page-size", "100", "--with-credentials"]);
    assert.equal(json.code, 0, json.stderr);
    const rows = jsonLines(json.stdout);
    assert.equal(rows.length, 250);
    assert.match(json.stderr, /exported 250 account\(s\)/);
    const first = rows.find((r) => r.login === "cli-001")!;
    assert.deepEqual(first.credentials, { login: "cli-001", password: "pw-1", phone: "+79990000001", additional: {} });

    const out = join(dataDir, "export.csv");
    const csv = await conveer(["accounts", "export", "--format", "csv", "--page-size", "100", "--with-credentials", "--platform", "vk", "--out", out]);
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(csv.stdout, "");
    const lines = (await readFile(out, "utf8")).trimEnd().split("\n");
    assert.equal(lines[0], "id,platform,login,status,reason,labels,created,updated,has_phone,password,phone,additional");
    assert.equal(lines.length, 126);
    assert.ok(lines.slice(1).every((l) => l.split(",")[1] === "vk"));
    assert.equal((await stat(out)).mode & 0o777, 0o600);

    const plain = await conveer(["accounts", "export", "--format", "json", "--page-size", "100"]);
    assert.equal(jsonLines(plain.stdout).length, 250);
    assert.ok(!plain.stdout.includes("pw-1"), "credentials exported without --with-credentials");

    // Every credentials read of both exports is in the audit log under the token's name (250 + 125), and no other.
    const audit = await conveer(["audit", "--action", "credentials.read", "--output", "json", "--limit", "1000"]);
    assert.equal(audit.code, 0, audit.stderr);
    const reads = jsonLines(audit.stdout);
    assert.equal(reads.length, 375);
    assert.ok(reads.every((e) => e.actor === "ops" && typeof e.accountId === "string"), JSON.stringify(reads[0]));
    assert.equal(new Set(reads.map((e) => e.accountId)).size, 250);
  });

  test("accounts export --out onto an existing file readable by others makes it 0600 before writing", async () => {
    const out = join(dataDir, "existing.jsonl");
    await writeFile(out, "old\n", { mode: 0o644 });
    await chmod(out, 0o644);
    const r = await conveer(["accounts", "export", "--format", "json", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await stat(out)).mode & 0o777, 0o600, "an export (credentials, with --with-credentials) must not stay world-readable");
    assert.equal(jsonLines(await readFile(out, "utf8")).length, 250);
  });

  test("accounts export --with-credentials with a token lacking credentials:read exits 1 naming the scope", async () => {
    const r = await conveer(["accounts", "export", "--format", "json", "--with-credentials"], { CONVEER_TOKEN: reader });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /credentials:read/);
    assert.ok(!r.stdout.includes("pw-"));
    // Without credentials that token exports fine.
    const ok = await conveer(["accounts", "export", "--format", "csv"], { CONVEER_TOKEN: reader });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trimEnd().split("\n").length, 251);
  });

  test("accounts get, delete and history", async () => {
    const [acc] = jsonLines((await conveer(["accounts", "list", "--output", "json", "--login-prefix", "cli-100"])).stdout);
    const got = await conveer(["accounts", "get", String(acc.id), "--output", "json"]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(jsonLines(got.stdout)[0].login, "cli-100");
    const del = await conveer(["accounts", "delete", String(acc.id), "--reason", "operator test"]);
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stdout, new RegExp(`^deleted ${acc.id}`));
    const hist = await conveer(["accounts", "history", String(acc.id), "--output", "json"]);
    assert.equal(hist.code, 0, hist.stderr);
    const changes = jsonLines(hist.stdout);
    assert.equal(changes[0].toStatus, "ACCOUNT_STATUS_DELETED");
    assert.equal(changes[0].reason, "operator test");
    // The table shows statuses as `accounts list` does (DELETED, not ACCOUNT_STATUS_DELETED).
    const table = await conveer(["accounts", "history", String(acc.id)]);
    assert.match(table.stdout.split("\n")[1] ?? "", /\bACTIVE\b.*\bDELETED\b.*operator test/, table.stdout);
    assert.doesNotMatch(table.stdout, /ACCOUNT_STATUS_/);
    const missing = await conveer(["accounts", "get", "0123456789abcdef01234567"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^conveer: .*not found/m);
  });

  test("bad usage exits 2 naming the option and the fix", async () => {
    const cases: [string[], RegExp][] = [
      [["accounts", "list", "--status", "sleeping"], /--status.*must be one of CREATING, ACTIVE/],
      [["accounts", "list", "--label", "team"], /--label.*must be key=value/],
      [["accounts", "list", "--limit", "0"], /--limit.*whole number from 1/],
      [["accounts", "export"], /--format/],
      [["accounts", "export", "--format", "xml"], /--format.*must be json or csv/],
      [["accounts", "delete", "0123456789abcdef01234567"], /--reason/],
      [["registrations", "list"], /--platform/],
      [["registrations", "list", "--platform", "vk", "--since", "yesterday"], /--since.*ISO 8601/],
      [["registrations", "list", "--platform", "vk", "--batch", "a b"], /--batch.*1-64 letters/],
      [["register", "--platform", "vk", "--batch", "x".repeat(65)], /--batch.*1-64 letters/],
      [["proxies", "list", "--health", "ok"], /--health.*HEALTHY, UNHEALTHY/],
      [["sms", "activations", "--output", "xml"], /--output.*table, json or csv/],
    ];
    for (const [args, re] of cases) {
      const r = await conveer(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(" "));
    }
  });

  test("proxies add (one bad URL: exit 1), list as JSON and CSV, check, remove", async () => {
    const add = await conveer(["proxies", "add", "http://127.0.0.1:30101", "ftp://127.0.0.1:30102", "socks5://u:s3cret@127.0.0.1:30103", "--tag", "cli", "--country", "de"]);
    assert.equal(add.code, 1, add.stderr);
    const ids = add.stdout.trim().split("\n");
    assert.equal(ids.length, 2);
    assert.match(add.stderr, /ftp:\/\/127\.0\.0\.1:30102: .*unsupported scheme "ftp"/);
    assert.match(add.stderr, /added 2, failed 1/);

    const list = await conveer(["proxies", "list", "--tag", "cli", "--output", "json"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = jsonLines(list.stdout);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...ids].sort());
    assert.ok(rows.every((r) => r.password === "" && r.country === "DE"), JSON.stringify(rows));
    const csv = await conveer(["proxies", "list", "--allocation", "free", "--output", "csv"]);
    assert.equal(csv.stdout.split("\n")[0], "id,url,country,provider,tags,healthy,failures,allocated,accounts");
    assert.ok(!csv.stdout.includes("s3cret"));

    // Nothing listens on these ports: the check runs, finds them unhealthy, and says so with exit 1.
    const check = await conveer(["proxies", "check", ids[0], "--output", "json"]);
    assert.equal(check.code, 1, check.stderr);
    const [h] = jsonLines(check.stdout);
    assert.deepEqual([h.proxyId, h.healthy], [ids[0], false]);

    const rm1 = await conveer(["proxies", "remove", ...ids, "0123456789abcdef01234567"]);
    assert.equal(rm1.code, 1);
    assert.equal(rm1.stdout.trim().split("\n").length, 2);
    assert.match(rm1.stderr, /0123456789abcdef01234567: .*not found/);
    assert.equal(jsonLines((await conveer(["proxies", "list", "--tag", "cli", "--output", "json"])).stdout).length, 0);
  });

  test("warm watch with a refused token says so and exits 1 at once, never retrying", async () => {
    for (const [token, re] of [
      ["cv_not-a-token", /^conveer: the server refused the token \(Unauthenticated: /m],
      [reader, /^conveer: the server refused the token \(PermissionDenied: .*\); set CONVEER_TOKEN to a token with the warming:read scope/m],
    ] as const) {
      const started = Date.now();
      const r = await conveer(["warm", "watch", "--all"], { CONVEER_TOKEN: token });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /retrying/);
      assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    }
  });

  test("registrations list|show and sms activations|balance", async () => {
    // The pool is empty: the registration fails at allocate_proxy and is recorded as FAILED.
    const reg = await conveer(["register", "--platform", "mail", "--output", "json"]);
    assert.equal(reg.code, 1, reg.stderr);
    const [res] = jsonLines(reg.stdout);
    const list = await conveer(["registrations", "list", "--platform", "mail", "--state", "failed", "--since", "1h", "--output", "json"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = jsonLines(list.stdout);
    assert.equal(rows.length, 1);
    assert.deepEqual([rows[0].id, rows[0].state, rows[0].failedStep], [res.registrationId, "REGISTRATION_STATE_FAILED", res.failedStep]);
    assert.equal(jsonLines((await conveer(["registrations", "list", "--platform", "mail", "--until", "2000-01-01", "--output", "json"])).stdout).length, 0);
    const show = await conveer(["--server", `http://127.0.0.1:${http}`, "registrations", "show", String(res.registrationId), "--platform", "mail", "--output", "json"]);
    assert.equal(show.code, 0, show.stderr);
    assert.equal(jsonLines(show.stdout)[0].platform, "mail");

    const acts = await conveer(["sms", "activations", "--service", "mail", "--output", "json"]);
    assert.equal(acts.code, 0, acts.stderr);
    assert.ok(jsonLines(acts.stdout).every((a) => a.service === "mail"));
    const bal = await conveer(["sms", "balance", "--output", "json"]);
    assert.equal(bal.code, 0, bal.stderr);
    const [b] = jsonLines(bal.stdout);
    assert.equal(typeof b.balance, "number");
    assert.ok(String(b.currency).length === 3);
  });
});
