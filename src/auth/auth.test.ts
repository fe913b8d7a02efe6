import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Code } from "@connectrpc/connect";
import type { ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { startApp } from "../app.ts";
import { SERVICE_NAMES, isLoopback, loadConfig } from "../config/config.ts";
import type { ServiceName } from "../config/config.ts";
import { remoteClient } from "../server/clients.ts";
import { createIdGenerator } from "../store/ids.ts";
import type { Db } from "../store/db.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { eventually, rejectsWith } from "../../test/support/grpc.ts";
import { ALL_SCOPES, grants, validateScopes } from "./scopes.ts";
import { OPEN_PRINCIPAL, createAuthenticator, createToken, listTokens, revokeToken, tokensEverCreated } from "./tokens.ts";

const newId = createIdGenerator();
const ABSENT = "0123456789abcdef01234567";

for (const kind of STORE_KINDS) {
  describe(`API tokens over gRPC on ${kind}`, () => {
    let sys: TestSystem;
    const tokens: Record<string, string> = {};
    let accountId: string;
    before(async () => {
      sys = await startTestSystem(kind);
      // Tokens exist before the first call, so the system is never open (no 5 s cache to wait out).
      for (const [name, scopes] of Object.entries({
        admin: ["*"],
        reader: ["accounts:read"],
        writer: ["accounts:write"],
        accadmin: ["accounts:admin"],
        creds: ["credentials:read"],
        auditor: ["accounts:read", "credentials:read"],
        proxies: ["proxies:read"],
      })) {
        tokens[name] = await createToken(sys.db, newId(), name, scopes);
      }
      accountId = (await sys.as(tokens.admin).accounts.createAccount({ platform: "vk", login: "auth-subject", password: "pw" })).id;
    });
    after(() => sys.stop());

    test("once a token exists, a call without one is UNAUTHENTICATED and says how to get one", async () => {
      await rejectsWith(sys.accounts.getAccount({ accountId }), Code.Unauthenticated, /authorization: Bearer <token>.*conveer token create/);
      await rejectsWith(sys.proxies.listProxies({}), Code.Unauthenticated, /conveer token create/);
    });

    test("an unknown token and a malformed header are UNAUTHENTICATED; the scheme is case-insensitive", async () => {
      await rejectsWith(sys.as("cv_not-a-real-token").accounts.getAccount({ accountId }), Code.Unauthenticated, /unknown or revoked.*conveer token create/);
      const sessions: Http2SessionManager[] = [];
      const raw = remoteClient(AccountService, { addr: sys.addr("account"), sessions });
      try {
        await rejectsWith(raw.getAccount({ accountId }, { headers: { authorization: "Basic YWxhZGRpbjpvcGVuc2VzYW1l" } }), Code.Unauthenticated, /must be "Bearer <token>"/);
        assert.equal((await raw.getAccount({ accountId }, { headers: { authorization: `bearer ${tokens.reader}` } })).id, accountId);
      } finally {
        for (const s of sessions) s.abort();
      }
    });

    test("a token without the method's scope is PERMISSION_DENIED, naming the scope and the method", async () => {
      await rejectsWith(sys.as(tokens.proxies).accounts.getAccount({ accountId }), Code.PermissionDenied, /token "proxies" lacks scope "accounts:read" needed by conveer\.AccountService\.GetAccount/);
      await rejectsWith(sys.as(tokens.reader).proxies.listProxies({}), Code.PermissionDenied, /lacks scope "proxies:read"/);
      assert.equal((await sys.as(tokens.proxies).proxies.listProxies({})).proxies.length, 0);
    });

    test("accounts:read reads accounts but neither writes nor reads credentials (credentials:read)", async () => {
      const r = sys.as(tokens.reader).accounts;
      assert.equal((await r.getAccount({ accountId })).login, "auth-subject");
      assert.ok((await r.listAccounts({})).accounts.length >= 1);
      assert.ok((await r.getStatusHistory({ accountId })).changes.length >= 1);
      await rejectsWith(r.getCredentials({ accountId }), Code.PermissionDenied, /lacks scope "credentials:read"/);
      await rejectsWith(r.createAccount({ platform: "vk", login: "nope", password: "pw" }), Code.PermissionDenied, /lacks scope "accounts:write"/);
      await rejectsWith(r.updateStatus({ accountId, status: AccountStatus.SUSPENDED }), Code.PermissionDenied, /accounts:write/);
    });

    test("accounts:admin implies write and read, but not credentials:read; write implies read", async () => {
      const a = sys.as(tokens.accadmin).accounts;
      const made = await a.createAccount({ platform: "mail", login: "by-accadmin", password: "pw" });
      assert.equal((await a.getAccount({ accountId: made.id })).login, "by-accadmin");
      await rejectsWith(a.getCredentials({ accountId: made.id }), Code.PermissionDenied, /credentials:read/);
      const w = sys.as(tokens.writer).accounts;
      const made2 = await w.createAccount({ platform: "mail", login: "by-writer", password: "pw" });
      assert.equal((await w.getAccount({ accountId: made2.id })).id, made2.id);
      await rejectsWith(sys.as(tokens.creds).accounts.getAccount({ accountId }), Code.PermissionDenied, /accounts:read/);
    });

    test("the audit record and the status history carry the token's name", async () => {
      const cred = await sys.as(tokens.creds).accounts.getCredentials({ accountId });
      assert.equal(cred.password, "pw");
      await sys.as(tokens.auditor).accounts.getCredentials({ accountId });
      const audit = await sys.db.query<{ actor: string }>("SELECT actor FROM audit_log WHERE account_id = $1 AND action = 'credentials.read' ORDER BY id", [accountId]);
      assert.deepEqual(audit.rows.map((r) => r.actor), ["creds", "auditor"]);
      await sys.as(tokens.writer).accounts.updateStatus({ accountId, status: AccountStatus.WARMING, reason: "test" });
      const h = await sys.as(tokens.reader).accounts.getStatusHistory({ accountId });
      assert.deepEqual(h.changes.map((c) => c.author), ["writer", "admin"]);
      // A refused GetCredentials writes nothing.
      await rejectsWith(sys.as(tokens.reader).accounts.getCredentials({ accountId }), Code.PermissionDenied);
      assert.equal((await sys.db.query("SELECT 1 FROM audit_log WHERE account_id = $1 AND action = 'credentials.read'", [accountId])).rowCount, 2);
    });

    test("tokens are stored only as hashes", async () => {
      const rows = await sys.db.query<{ token_hash: string }>("SELECT token_hash FROM api_tokens");
      for (const secret of Object.values(tokens)) assert.ok(!rows.rows.some((r) => r.token_hash.includes(secret)));
      const dump = JSON.stringify((await sys.db.query("SELECT * FROM api_tokens")).rows);
      for (const secret of Object.values(tokens)) assert.ok(!dump.includes(secret.slice(3)), "a token secret is stored in clear");
      assert.deepEqual((await listTokens(sys.db)).map((t) => t.name).sort(), Object.keys(tokens).sort());
    });
  });

  describe(`open mode and start-up refusal on ${kind}`, () => {
    test("with no token ever, a loopback-only system runs open; a token created on its store (CLI, another replica) closes it within the 5 s cache, for good", async () => {
      const sys = await startTestSystem(kind);
      try {
        const acc = await sys.accounts.createAccount({ platform: "vk", login: "open", password: "pw" });
        assert.equal((await sys.accounts.getCredentials({ accountId: acc.id })).password, "pw");
        await rejectsWith(sys.as("cv_bogus").accounts.getAccount({ accountId: acc.id }), Code.Unauthenticated);

        const secret = await createToken(sys.db, newId(), "from-cli", ["accounts:read"]);
        const t0 = performance.now();
        await eventually(
          () => sys.accounts.getAccount({ accountId: acc.id }).then(() => false, (e: ConnectError) => e.code === Code.Unauthenticated),
          7000,
          "anonymous calls to be refused",
        );
        const ms = performance.now() - t0;
        assert.ok(ms < 5500, `closed ${Math.round(ms)} ms after the token was created (cache 5 s)`);
        assert.equal((await sys.as(secret).accounts.getAccount({ accountId: acc.id })).id, acc.id);

        await revokeToken(sys.db, "from-cli");
        await new Promise((r) => setTimeout(r, 5200)); // past every cache window
        await rejectsWith(sys.accounts.getCredentials({ accountId: acc.id }), Code.Unauthenticated, /conveer token create/);
        await rejectsWith(sys.as(secret).accounts.getAccount({ accountId: acc.id }), Code.Unauthenticated, /unknown or revoked/);
      } finally {
        await sys.stop();
      }
    });

    /** Starts services (default: account) on a fresh store with `env`; `token` scopes create one first (and `revoked` revokes it). */
    const startWith = async (env: Record<string, string>, token?: string[], o: { services?: ServiceName[]; revoked?: boolean } = {}) => {
      const store = await freshStore(kind);
      const dataDir = await mkdtemp(join(tmpdir(), "conveer-auth-"));
      const secret = token ? await createToken(store.db, newId(), "ops", token) : undefined;
      if (o.revoked) await revokeToken(store.db, "ops");
      const full: Record<string, string> = { CONVEER_DATA_DIR: dataDir, CONVEER_HTTP_ADDR: "127.0.0.1:0", CONVEER_MASTER_KEY: "22".repeat(32) };
      for (const s of SERVICE_NAMES) full[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = "127.0.0.1:0";
      Object.assign(full, env);
      const cleanup = async () => {
        await store.drop();
        await rm(dataDir, { recursive: true, force: true });
      };
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: "info" }, new Writable({ write: (chunk, _enc, cb) => (lines.push(JSON.parse(String(chunk))), cb()) }));
      try {
        const app = await startApp({ config: loadConfig(full), services: o.services ?? ["account"], db: store.db, log });
        const sessions: Http2SessionManager[] = [];
        const client = (t?: string) => remoteClient(AccountService, { addr: `127.0.0.1:${app.ports.account}`, token: t, sessions });
        const stop = async () => {
          for (const s of sessions) s.abort();
          await app.stop(1000);
          await cleanup();
        };
        const authLog = () => lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("auth mode:"));
        return { app, secret, db: store.db as Db, client, stop, authLog };
      } catch (err) {
        await cleanup();
        throw err;
      }
    };

    test("a store that once had a token stays closed after every token is revoked, through a restart (no anonymous call, GetCredentials included)", async () => {
      const sys = await startWith({}, ["*"], { revoked: true });
      try {
        await rejectsWith(sys.client().getAccount({ accountId: ABSENT }), Code.Unauthenticated, /conveer token create/);
        await rejectsWith(sys.client().getCredentials({ accountId: ABSENT }), Code.Unauthenticated);
        assert.deepEqual(sys.authLog().map((l) => l.auth), ["tokens"]);
        assert.match(String(sys.authLog()[0].msg), /auth mode: tokens.*no active token exists.*conveer token create/);
      } finally {
        await sys.stop();
      }
    });

    test("CONVEER_AUTH=open beyond loopback refuses to start, naming the address, its variable and the fix", async () => {
      await assert.rejects(startWith({ CONVEER_AUTH: "open", ACCOUNT_SERVICE_GRPC_ADDR: "0.0.0.0:0" }), /refusing to start: CONVEER_AUTH=open .*0\.0\.0\.0:0 \(ACCOUNT_SERVICE_GRPC_ADDR\).*conveer token create/);
      await assert.rejects(startWith({ CONVEER_AUTH: "open", CONVEER_HTTP_ADDR: "[::]:0" }, ["*"]), /CONVEER_AUTH=open .*\(CONVEER_HTTP_ADDR\)/);
      assert.throws(() => loadConfig({ CONVEER_AUTH: "none" }), /CONVEER_AUTH must be one of auto, open, tokens, got "none"/);
    });

    test("CONVEER_AUTH=open on loopback lets anonymous calls in even with tokens in the store, and logs it", async () => {
      const sys = await startWith({ CONVEER_AUTH: "open" }, ["accounts:read"]);
      try {
        await rejectsWith(sys.client().getAccount({ accountId: ABSENT }), Code.NotFound);
        assert.equal(sys.authLog()[0].auth, "open");
        assert.equal(sys.authLog()[0].level, 40, "open mode is logged as a warning");
      } finally {
        await sys.stop();
      }
    });

    test("CONVEER_AUTH=tokens with no token at all starts, refuses anonymous calls, and logs how to create one", async () => {
      const sys = await startWith({ CONVEER_AUTH: "tokens" });
      try {
        await rejectsWith(sys.client().getAccount({ accountId: ABSENT }), Code.Unauthenticated, /conveer token create/);
        assert.match(String(sys.authLog()[0].msg), /auth mode: tokens \(CONVEER_AUTH=tokens\).*no active token exists.*conveer token create/);
        // A token made meanwhile (the CLI on PostgreSQL, another replica) is accepted.
        const t = await createToken(sys.db, newId(), "late", ["accounts:read"]);
        await rejectsWith(sys.client(t).getAccount({ accountId: ABSENT }), Code.NotFound);
      } finally {
        await sys.stop();
      }
    });

    test("an in-process sandbox beyond loopback counts: with no token the start is refused (CONVEER_SANDBOX_ADDR named)", async () => {
      await assert.rejects(startWith({ CONVEER_SANDBOX_ADDR: "0.0.0.0:0" }, undefined, { services: ["account", "sms"] }), /refusing to start.*0\.0\.0\.0:0 \(CONVEER_SANDBOX_ADDR\).*conveer token create/);
      await assert.rejects(startWith({ CONVEER_AUTH: "open", CONVEER_SANDBOX_ADDR: "0.0.0.0:0" }, undefined, { services: ["vk"] }), /CONVEER_AUTH=open .*\(CONVEER_SANDBOX_ADDR\)/);
    });

    test("listening beyond loopback with no token refuses to start, naming `conveer token create`", async () => {
      await assert.rejects(startWith({ ACCOUNT_SERVICE_GRPC_ADDR: "0.0.0.0:0" }), /refusing to start.*0\.0\.0\.0.*conveer token create/);
      await assert.rejects(startWith({ CONVEER_HTTP_ADDR: "0.0.0.0:0" }), /refusing to start.*conveer token create/);
      // A host name that merely starts with "127." is not loopback.
      await assert.rejects(startWith({ ACCOUNT_SERVICE_GRPC_ADDR: "127.0.0.1.nip.io:0" }), /refusing to start.*conveer token create/);
    });

    test("beyond loopback with a token, the system starts and requires it (never open, even once every token is revoked)", async () => {
      const sys = await startWith({ ACCOUNT_SERVICE_GRPC_ADDR: "0.0.0.0:0" }, ["accounts:admin"]);
      try {
        await rejectsWith(sys.client().getAccount({ accountId: ABSENT }), Code.Unauthenticated, /conveer token create/);
        await rejectsWith(sys.client(sys.secret).getAccount({ accountId: ABSENT }), Code.NotFound);
        await revokeToken(sys.db, "ops");
        await rejectsWith(sys.client().getAccount({ accountId: ABSENT }), Code.Unauthenticated);
        assert.deepEqual(sys.authLog().map((l) => l.auth), ["tokens"]);
      } finally {
        await sys.stop();
      }
    });
  });

  describe(`authenticator on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    before(async () => {
      store = await freshStore(kind);
    });
    after(() => store.drop());

    test("a revoked token is refused once the cache window has passed (and not before: the documented delay)", async () => {
      let clock = 1_000_000;
      const auth = createAuthenticator({ db: store.db, mode: "tokens", cacheMs: 5000, now: () => clock });
      const secret = await createToken(store.db, newId(), "short-lived", ["proxies:read"]);
      const p = await auth.authenticate(`Bearer ${secret}`);
      assert.equal(p.name, "short-lived");
      assert.equal(p.open, false);
      assert.ok(await revokeToken(store.db, "short-lived"));
      assert.equal(await revokeToken(store.db, "short-lived"), false, "revoking twice reports nothing to revoke");
      clock += 4000;
      assert.equal((await auth.authenticate(`Bearer ${secret}`)).name, "short-lived", "still cached within 5 s");
      clock += 1500;
      await assert.rejects(auth.authenticate(`Bearer ${secret}`), { code: "UNAUTHENTICATED", message: /unknown or revoked/ });
    });

    test("a real clock with a small cacheMs: revocation takes effect after the window", async () => {
      const auth = createAuthenticator({ db: store.db, mode: "tokens", cacheMs: 50 });
      const secret = await createToken(store.db, newId(), "quick", ["*"]);
      await auth.authenticate(`Bearer ${secret}`);
      await revokeToken(store.db, "quick");
      await new Promise((r) => setTimeout(r, 80));
      await assert.rejects(auth.authenticate(`Bearer ${secret}`), { code: "UNAUTHENTICATED" });
    });

    test("auto mode ends for good when the first token appears: revoking or even deleting every token never reopens it", async () => {
      const fresh = await freshStore(kind);
      try {
        let clock = 0;
        const auto = createAuthenticator({ db: fresh.db, mode: "auto", cacheMs: 5000, now: () => clock });
        const closed = createAuthenticator({ db: fresh.db, mode: "tokens" });
        assert.equal(await auto.authenticate(undefined), OPEN_PRINCIPAL);
        assert.equal(await auto.isOpen(), true);
        await assert.rejects(closed.authenticate(undefined), { code: "UNAUTHENTICATED", message: /conveer token create/ });
        assert.equal(await tokensEverCreated(fresh.db), false);
        await createToken(fresh.db, newId(), "first", ["*"]);
        assert.equal(await tokensEverCreated(fresh.db), true);
        clock += 5001;
        await assert.rejects(auto.authenticate(undefined), { code: "UNAUTHENTICATED", message: /conveer token create/ });
        await revokeToken(fresh.db, "first");
        clock += 5001;
        await assert.rejects(auto.authenticate(undefined), { code: "UNAUTHENTICATED" }, "closed for good once a token existed, whatever is revoked");
        // A new authenticator on that store (a restart, another replica) is closed from the start, even with the rows deleted.
        await fresh.db.query("DELETE FROM api_tokens");
        assert.equal(await tokensEverCreated(fresh.db), true, "the store remembers a token was made");
        const restarted = createAuthenticator({ db: fresh.db, mode: "auto" });
        assert.equal(await restarted.isOpen(), false);
        await assert.rejects(restarted.authenticate(undefined), { code: "UNAUTHENTICATED" });
        // A damaged flag (its row gone) closes, never opens.
        await fresh.db.query("DELETE FROM auth_state");
        assert.equal(await tokensEverCreated(fresh.db), true);
        // CONVEER_AUTH=open is configuration: anonymous calls are let in whatever the store holds (a token sent is still checked).
        const open = createAuthenticator({ db: fresh.db, mode: "open" });
        assert.equal(await open.authenticate(undefined), OPEN_PRINCIPAL);
        await assert.rejects(open.authenticate("Bearer cv_bogus"), { code: "UNAUTHENTICATED" });
      } finally {
        await fresh.drop();
      }
    });

    test("createToken validates names and scopes, and refuses a duplicate name", async () => {
      await assert.rejects(createToken(store.db, newId(), "has space", ["*"]), /token name must be/);
      // The message reads as a sentence after the field's name (it was "scopes unknown scope …").
      await assert.rejects(createToken(store.db, newId(), "x", []), /: scopes must name at least one scope; valid scopes: /);
      await assert.rejects(createToken(store.db, newId(), "x", ["accounts:delete"]), /: scopes has an unknown scope "accounts:delete"; valid scopes: \*, credentials:read/);
      await createToken(store.db, newId(), "dup", ["*"]);
      await assert.rejects(createToken(store.db, newId(), "dup", ["*"]), /a token named "dup" already exists/);
    });
  });
}

describe("scopes", () => {
  test("admin implies write implies read, per area; credentials:read and proxies:secrets only by themselves or *", () => {
    const g = (...s: string[]) => new Set(s);
    assert.ok(grants(g("accounts:admin"), "accounts:write"));
    assert.ok(grants(g("accounts:admin"), "accounts:read"));
    assert.ok(grants(g("accounts:write"), "accounts:read"));
    assert.ok(!grants(g("accounts:write"), "accounts:admin"));
    assert.ok(!grants(g("accounts:read"), "accounts:write"));
    assert.ok(!grants(g("accounts:admin"), "proxies:read"));
    assert.ok(!grants(g("accounts:admin"), "credentials:read"));
    assert.ok(grants(g("credentials:read"), "credentials:read"));
    assert.ok(grants(g("*"), "credentials:read"));
    assert.ok(grants(g("*"), "proxies:admin"));
    assert.ok(!grants(g(), "accounts:read"));
    // proxies:secrets (proxy passwords) is a secret scope: implied by nothing but itself and *.
    for (const level of ["read", "write", "admin"]) assert.ok(!grants(g(`proxies:${level}`), "proxies:secrets"), level);
    assert.ok(!grants(g("credentials:read"), "proxies:secrets"));
    assert.ok(!grants(g("proxies:secrets"), "proxies:read"));
    assert.ok(grants(g("proxies:secrets"), "proxies:secrets"));
    assert.ok(grants(g("*"), "proxies:secrets"));
    for (const s of ALL_SCOPES) validateScopes([s]);
  });

  test("only loopback hosts count as loopback", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1"]) assert.ok(isLoopback(h), h);
    for (const h of ["0.0.0.0", "10.0.0.1", "::", "127.0.0.1.nip.io", "127.example.com", "example.com"]) assert.ok(!isLoopback(h), h);
  });
});
