/**
 * AdminService on the HTTP port, over gRPC (a real client) and Connect JSON (plain fetch): scopes
 * (no token, a token without `admin`, WhoAmI for any caller), tokens, the audit log's entries for
 * every kind of write with its filters and pages, and key rotation with its audit entry.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { Code, createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createToken } from "../src/auth/tokens.ts";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { AdminService, KeyRotationState } from "../src/gen/conveer/v1/admin_pb.js";
import { createIdGenerator } from "../src/store/ids.ts";
import { STORE_KINDS } from "./support/store.ts";
import { rejectsWith } from "./support/grpc.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const newId = createIdGenerator();
const run = promisify(execFile);
type Json = Record<string, unknown>;

/** Every message of a server stream. */
async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of stream) out.push(m);
  return out;
}

for (const kind of STORE_KINDS) {
  describe(`AdminService on the HTTP port (${kind})`, () => {
    let sys: TestSystem;
    let base: string;
    const t: Record<string, string> = {};
    const grpc = (token?: string): Client<typeof AdminService> => {
      const bearer: Interceptor = (next) => (req) => (token && req.header.set("authorization", `Bearer ${token}`), next(req));
      return createClient(AdminService, createGrpcTransport({ baseUrl: base, interceptors: [bearer] }));
    };
    /** Connect JSON with plain fetch: the answer's status and parsed body. */
    const json = async (method: string, body: Json, token?: string): Promise<{ status: number; body: Json }> => {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch(`${base}/conveer.AdminService/${method}`, { method: "POST", headers, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Json };
    };

    before(async () => {
      sys = await startTestSystem(kind, { env: { CONVEER_AUTH: "tokens", CONVEER_PROXY_ALLOW_PRIVATE: "true" }, services: ["account", "proxy", "warming"] });
      base = `http://127.0.0.1:${sys.app.httpPort}`;
      t.root = await createToken(sys.db, newId(), "root", ["*"]);
      t.ops = await createToken(sys.db, newId(), "ops", ["admin"]);
      t.reader = await createToken(sys.db, newId(), "reader", ["accounts:admin", "credentials:read", "proxies:admin"]);
    });
    after(() => sys?.stop());

    test("scopes: no token is UNAUTHENTICATED, a token without `admin` (even accounts:admin) PERMISSION_DENIED; WhoAmI needs no scope", async () => {
      await rejectsWith(grpc().listTokens({}), Code.Unauthenticated, /Bearer/);
      const anon = await json("ListTokens", {});
      assert.equal(anon.status, 401);
      assert.equal(anon.body.code, "unauthenticated");
      await rejectsWith(grpc(t.reader).listAuditEntries({}), Code.PermissionDenied, /lacks scope "admin"/);
      const denied = await json("StartKeyRotation", {}, t.reader);
      assert.equal(denied.status, 403);
      assert.equal(denied.body.code, "permission_denied");
      await rejectsWith(grpc().whoAmI({}), Code.Unauthenticated);

      const me = await grpc(t.reader).whoAmI({});
      assert.deepEqual([me.tokenName, me.scopes, me.open], ["reader", ["accounts:admin", "credentials:read", "proxies:admin"], false]);
      const meJson = await json("WhoAmI", {}, t.ops);
      assert.equal(meJson.status, 200);
      assert.deepEqual(meJson.body, { tokenName: "ops", scopes: ["admin"] });
      assert.deepEqual((await json("WhoAmI", {}, t.root)).body.scopes, ["*"]);
    });

    test("tokens: create (secret once), list (never a secret), revoke, over gRPC and Connect JSON; each audited", async () => {
      const made = await grpc(t.ops).createToken({ name: "ci", scopes: ["accounts:read", "warming:write"] });
      assert.match(made.secret, /^cv_[A-Za-z0-9_-]{32}$/);
      assert.deepEqual([made.token?.name, made.token?.scopes, made.token?.revokedAt], ["ci", ["accounts:read", "warming:write"], undefined]);
      assert.equal((await grpc(made.secret).whoAmI({})).tokenName, "ci");
      await rejectsWith(grpc(t.ops).createToken({ name: "ci", scopes: ["*"] }), Code.AlreadyExists, /a token named "ci" already exists/);
      await rejectsWith(grpc(t.ops).createToken({ name: "bad name", scopes: ["*"] }), Code.InvalidArgument, /token name must be/);
      const badScope = await json("CreateToken", { name: "x", scopes: ["accounts:delete"] }, t.ops);
      assert.equal(badScope.status, 400);
      assert.match(String(badScope.body.message), /unknown scope "accounts:delete"/);

      const viaJson = await json("CreateToken", { name: "console", scopes: ["admin"] }, t.root);
      assert.equal(viaJson.status, 200);
      assert.match(String(viaJson.body.secret), /^cv_/);
      const listed = await json("ListTokens", {}, t.ops);
      const tokens = listed.body.tokens as Json[];
      assert.deepEqual(tokens.map((x) => x.name), ["root", "ops", "reader", "ci", "console"]);
      assert.ok(!JSON.stringify(listed.body).includes(String(viaJson.body.secret).slice(3)), "a secret was listed");
      assert.match(String(tokens[3].createdAt), /^\d{4}-\d\d-\d\dT/);

      assert.deepEqual((await json("RevokeToken", { name: "ci" }, t.ops)).body, { revoked: true });
      assert.equal((await grpc(t.ops).revokeToken({ name: "ci" })).revoked, false, "already revoked");
      assert.ok((await grpc(t.ops).listTokens({})).tokens.find((x) => x.name === "ci")?.revokedAt);

      const audit = await grpc(t.ops).listAuditEntries({ action: "token." });
      assert.deepEqual(
        audit.entries.map((e) => [e.action, e.actor, e.target, e.detail]),
        [
          ["token.revoke", "ops", "ci", ""],
          ["token.create", "root", "console", "scopes: admin"],
          ["token.create", "ops", "ci", "scopes: accounts:read,warming:write"],
        ],
      );
      assert.equal(audit.totalCount, 3n);
      for (const e of audit.entries) assert.match(e.peer, /127\.0\.0\.1/);
    });

    test("every kind of write is in the audit log, newest first, with what it concerned; filters by actor, action, account and time; pages", async () => {
      const acc = sys.as(t.root).accounts;
      const a = await acc.createAccount({ platform: "vk", login: "audited", password: "pw" });
      const imp = await sys.as(t.reader).accounts.importAccounts({ accounts: [{ platform: "mail", login: "imp-1", password: "p" }, { platform: "mail", login: "imp-2", password: "p" }] });
      await acc.updateStatus({ accountId: a.id, status: AccountStatus.BANNED, reason: "spam wave" });
      await acc.updateCredentials({ accountId: a.id, password: "new", additional: { note: "x" } });
      await sys.as(t.reader).accounts.getCredentials({ accountId: a.id });
      const proxy = await sys.as(t.root).proxies.addProxies({ proxies: [{ url: "http://u:secret@127.0.0.1:9", capacity: 5 }] });
      const proxyId = proxy.results[0].proxyId;
      await sys.as(t.root).proxies.allocateProxy({ accountId: imp.results[0].accountId, platform: "mail" });
      await acc.deleteAccount({ accountId: a.id, reason: "closed" });

      const mine = await grpc(t.ops).listAuditEntries({ accountId: a.id });
      assert.deepEqual(
        mine.entries.map((e) => [e.action, e.actor, e.detail]),
        [
          ["account.delete", "root", "closed"],
          ["credentials.read", "reader", ""],
          ["account.credentials_update", "root", "password, additional: note"],
          ["account.status", "root", "ACTIVE -> BANNED: spam wave"],
          ["account.create", "root", 'vk login "audited", ACTIVE'],
        ],
      );
      assert.equal(mine.totalCount, 5n);
      assert.ok(mine.entries.every((e) => e.accountId === a.id && e.id > 0n && e.at));

      // Connect JSON: the same entries with proto JSON names.
      const byJson = await json("ListAuditEntries", { accountId: imp.results[0].accountId }, t.ops);
      const entries = byJson.body.entries as Json[];
      assert.deepEqual(entries.map((e) => e.action), ["proxy_password.read", "account.import"]);
      assert.equal(entries[0].target, proxyId);
      assert.equal(entries[1].actor, "reader");
      assert.equal(byJson.body.totalCount, "2");

      const imports = await grpc(t.ops).listAuditEntries({ action: "account.import" });
      assert.equal(imports.totalCount, 2n);
      const accountActions = await grpc(t.ops).listAuditEntries({ action: "account." });
      assert.ok(accountActions.entries.every((e) => e.action.startsWith("account.")));
      assert.equal(accountActions.totalCount, 6n);
      // The pool's writes: each proxy added, and its removal (which released the account on it).
      await sys.as(t.root).proxies.removeProxy({ proxyId });
      const pool = await grpc(t.ops).listAuditEntries({ action: "proxy." });
      assert.deepEqual(
        pool.entries.map((e) => [e.action, e.actor, e.target, e.accountId, e.detail]),
        [
          ["proxy.remove", "root", proxyId, "", "http://127.0.0.1:9; accounts moved 0, released 1"],
          ["proxy.add", "root", proxyId, "", "http://127.0.0.1:9, capacity 5"],
        ],
      );
      assert.ok(pool.entries.every((e) => !e.detail.includes("secret") && !e.detail.includes("u:")), "no credentials in the detail");
      const byReader = await grpc(t.ops).listAuditEntries({ actor: "reader" });
      assert.deepEqual(byReader.entries.map((e) => e.action), ["credentials.read", "account.import", "account.import"]);
      const future = timestampFromDate(new Date(Date.now() + 60_000));
      assert.equal((await grpc(t.ops).listAuditEntries({ after: future })).totalCount, 0n);
      assert.equal((await grpc(t.ops).listAuditEntries({ before: future, accountId: a.id })).totalCount, 5n);
      await rejectsWith(grpc(t.ops).listAuditEntries({ action: "ACCOUNT" }), Code.InvalidArgument, /action must be a dotted name/);

      // Keyset pages of 2, newest first, over the whole log; a token under another filter is refused.
      const all = await grpc(t.ops).listAuditEntries({ pageSize: 1000 });
      const seen: bigint[] = [];
      let pageToken = "";
      do {
        const page = await grpc(t.ops).listAuditEntries({ pageSize: 2, pageToken });
        assert.equal(page.totalCount, all.totalCount);
        seen.push(...page.entries.map((e) => e.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      assert.deepEqual(seen, all.entries.map((e) => e.id));
      assert.deepEqual([...seen].sort((x, y) => (x < y ? 1 : -1)), seen, "newest first");
      // The README's curl example for the audit log works as written.
      const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
      const curl = /`(curl [^`]*conveer\.AdminService\/ListAuditEntries)`/.exec(readme)?.[1];
      assert.ok(curl, "the README shows a ListAuditEntries curl example");
      const out = await run("bash", ["-c", curl.replace("127.0.0.1:8080", `127.0.0.1:${sys.app.httpPort}`)], { env: { ...process.env, CONVEER_TOKEN: t.ops } });
      const viaCurl = JSON.parse(out.stdout) as { entries: { action: string }[]; totalCount: string };
      assert.equal(viaCurl.totalCount, String(accountActions.totalCount));
      assert.ok(viaCurl.entries.every((e) => e.action.startsWith("account.")));
      // An operator's warming changes: start, pause (a second pause changes nothing: no entry), resume, stop.
      const warmed = await acc.createAccount({ platform: "vk", login: "warmed", password: "pw" });
      const task = await sys.as(t.root).warming.startWarming({ accountId: warmed.id });
      await sys.as(t.root).warming.pauseWarming({ taskId: task.id });
      await sys.as(t.root).warming.pauseWarming({ taskId: task.id });
      await sys.as(t.root).warming.resumeWarming({ taskId: task.id });
      await sys.as(t.root).warming.stopWarming({ taskId: task.id, reason: "enough" });
      const warming = await grpc(t.ops).listAuditEntries({ action: "warming." });
      assert.deepEqual(
        warming.entries.map((e) => [e.action, e.actor, e.accountId, e.target, e.detail.replace(/^(\w+ -> \w+: started).*/, "$1")]),
        [
          ["warming.stop", "root", warmed.id, task.id, "RUNNING -> STOPPED: enough"],
          ["warming.resume", "root", warmed.id, task.id, "PAUSED -> RUNNING: resumed"],
          ["warming.pause", "root", warmed.id, task.id, "RUNNING -> PAUSED: paused"],
          ["warming.start", "root", warmed.id, task.id, "PENDING -> RUNNING: started"],
        ],
      );
      assert.ok(warming.entries.every((e) => e.peer !== ""), "each names the caller's address");
      const first = await grpc(t.ops).listAuditEntries({ pageSize: 2 });
      await rejectsWith(grpc(t.ops).listAuditEntries({ pageSize: 2, pageToken: first.nextPageToken, actor: "root" }), Code.InvalidArgument, /page_token/);
    });

    test("key rotation: started over gRPC, followed over Connect JSON to SUCCEEDED, audited; a second one while it runs is refused", async () => {
      const started = await grpc(t.ops).startKeyRotation({ batchSize: 1 });
      assert.equal(started.state, KeyRotationState.RUNNING);
      assert.equal(started.startedBy, "ops");
      assert.ok(started.total >= 3n, `total ${started.total}`);
      const again = await json("StartKeyRotation", {}, t.ops);
      // Either still running (refused, naming it) or already done (a second rotation is fine then).
      if (again.status !== 200) {
        assert.equal(again.body.code, "failed_precondition");
        assert.match(String(again.body.message), new RegExp(`key rotation ${started.id} .*is still running`));
      }
      const id = again.status === 200 ? String(again.body.id) : started.id;
      let r: Json = {};
      for (let i = 0; i < 300; i++) {
        r = (await json("GetKeyRotation", { rotationId: id }, t.ops)).body;
        if (r.state !== "KEY_ROTATION_STATE_RUNNING") break;
        await sleep(50);
      }
      assert.equal(r.state, "KEY_ROTATION_STATE_SUCCEEDED", String(r.error));
      assert.equal(r.done, r.total);
      assert.equal(r.remaining, undefined, "remaining is 0 (omitted in proto JSON)");
      const keys = await sys.db.query<{ key_id: string }>("SELECT DISTINCT key_id FROM accounts");
      assert.deepEqual(keys.rows.map((x) => x.key_id), [r.keyId]);
      const newest = await grpc(t.ops).getKeyRotation({});
      assert.equal(newest.id, id);
      const audit = await grpc(t.ops).listAuditEntries({ action: "keys.rotate" });
      assert.equal(audit.entries[0].target, r.keyId);
      assert.equal(audit.entries[0].actor, "ops");
      assert.match(audit.entries[0].detail, new RegExp(`rotation ${id}: \\d+ sealed values`));
    });

    test("BackupStore: the embedded store streams a dump that opens as a store with the same rows, audited; PostgreSQL answers FAILED_PRECONDITION (pg_dump); it needs `admin`", async () => {
      await rejectsWith(collect(grpc(t.reader).backupStore({})), Code.PermissionDenied, /lacks scope "admin"/);
      if (kind === "postgres") {
        await rejectsWith(collect(grpc(t.ops).backupStore({})), Code.FailedPrecondition, /pg_dump/);
        return;
      }
      const chunks = await collect(grpc(t.ops).backupStore({}));
      const [head, ...rest] = chunks;
      const dump = Buffer.concat(rest.map((c) => c.data));
      assert.equal(dump.length, Number(head.totalBytes));
      assert.ok(rest.every((c) => c.data.length <= 1 << 20), "pieces of at most 1 MiB");
      const counted = (JSON.parse(head.rowCounts) as { tables: Record<string, number> }).tables;
      const copy = await PGlite.create({ loadDataDir: new Blob([dump]) });
      try {
        const tokens = await copy.query<{ n: number }>("SELECT count(*)::int AS n FROM api_tokens");
        assert.equal(tokens.rows[0].n, counted.api_tokens);
        assert.ok(counted.api_tokens >= 3);
      } finally {
        await copy.close();
      }
      const audit = await grpc(t.ops).listAuditEntries({ action: "store.backup" });
      assert.equal(audit.entries[0].actor, "ops");
      assert.match(audit.entries[0].detail, new RegExp(`^${dump.length} bytes in \\d+ ms$`));
    });
  });
}
