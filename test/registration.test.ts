/**
 * The registration conveyor and the platform services over real gRPC, against the local sandbox
 * platform (never a real one): fifty concurrent registrations through real local HTTP CONNECT and
 * SOCKS5 proxies, a code that never comes (refund, proxy freed, account DELETED), a platform with
 * no driver, the eight actions and the platform's answers (rate limit, ban, reinstate), and a
 * server SIGKILLed mid-registration whose next start cleans the registration up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { ActionType } from "../src/gen/conveer/v1/platform_pb.js";
import type { RegisterResponse } from "../src/gen/conveer/v1/platform_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { SMSService } from "../src/gen/conveer/v1/sms_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { MaxService } from "../src/gen/conveer/v1/max_pb.js";
import type { ServiceName } from "../src/config/config.ts";
import { remoteClient } from "../src/server/clients.ts";
import { createSandbox } from "../src/sandbox/index.ts";
import { openPglite } from "../src/store/pglite.ts";
import { openPostgres } from "../src/store/postgres.ts";
import type { Db } from "../src/store/db.ts";
import { STORE_KINDS, dropPostgresDatabase, freshPostgresDatabase } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";
import { startEchoTarget, startHttpConnectProxy, startSocks5Proxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";
import { eventually, rejectsWith } from "./support/grpc.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

const REGISTRATIONS = 50;

/** POSTs JSON to the sandbox's admin API; answers the JSON body (asserting 200). */
async function sandboxAdmin(base: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  assert.equal(r.status, 200, `${path}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

type RegistrationRow = { id: string; status: string; step: string; failed_step: string; error: string; account_id: string; proxy_id: string; activation_id: string };

for (const kind of STORE_KINDS) {
  describe(`registration conveyor and platform services on ${kind}`, () => {
    let sys: TestSystem;
    let echo: LocalTarget;
    const locals: LocalProxy[] = [];
    const sessions: Http2SessionManager[] = [];
    let vk: Client<typeof VKService>;
    let max: Client<typeof MaxService>;
    let sms: Client<typeof SMSService>;
    let sandboxUrl: string;
    /** Accounts registered by the first test. */
    const registered: string[] = [];

    before(async () => {
      // Proxy health checks (if any ran) go to a local echo target, never outside.
      echo = await startEchoTarget();
      sys = await startTestSystem(kind, {
        backgroundChecks: false,
        env: {
          CONVEER_REGISTRATION_CODE_TIMEOUT_S: "2",
          CONVEER_PLATFORM_DRIVERS: "max=none",
          CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
          // The proxies (and the echo target) are local.
          CONVEER_PROXY_ALLOW_PRIVATE: "true",
        },
      });
      sandboxUrl = sys.app.sandboxUrl;
      assert.match(sandboxUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      vk = remoteClient(VKService, { addr: sys.addr("vk"), sessions });
      max = remoteClient(MaxService, { addr: sys.addr("max"), sessions });
      sms = remoteClient(SMSService, { addr: sys.addr("sms"), sessions });
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await sys?.stop();
      await Promise.all(locals.map((p) => p.close()));
      await echo?.close();
    });

    test(`${REGISTRATIONS} concurrent registrations through VKService, each on its own real local proxy: all ACTIVE, credentials stored, ${REGISTRATIONS} prices paid`, async () => {
      // 25 HTTP CONNECT and 25 SOCKS5 proxies; every other one demands credentials.
      for (let i = 0; i < REGISTRATIONS; i++) {
        const auth = i % 4 < 2 ? { username: `user${i}`, password: `pass-${i}` } : undefined;
        locals.push(i % 2 === 0 ? await startHttpConnectProxy(auth) : await startSocks5Proxy(auth));
      }
      const added = await sys.proxies.addProxies({ proxies: locals.map((p) => ({ url: p.url, capacity: 1, country: "RU" })) });
      assert.equal(added.added, REGISTRATIONS, JSON.stringify(added.results.filter((r) => r.error)));
      const proxyIds = new Set(added.results.map((r) => r.proxyId));
      const before = await sms.getBalance({});
      assert.equal(before.currency, "RUB");

      const t0 = performance.now();
      const results: RegisterResponse[] = await Promise.all(
        Array.from({ length: REGISTRATIONS }, (_, i) =>
          vk.register(
            { login: `reg_${kind}_${i}`, firstName: "Reg", lastName: `N${i}`, proxyCountry: "RU", platformFields: { birth_date: "1990-01-02", gender: i % 2 ? "male" : "female" } },
            { timeoutMs: 60_000 },
          ),
        ),
      );
      const ms = performance.now() - t0;
      const failed = results.filter((r) => !r.success).map((r) => `${r.failedStep}: ${r.error}`);
      assert.deepEqual(failed, [], "every registration succeeds");
      assert.ok(ms < 30_000, `${REGISTRATIONS} registrations took ${Math.round(ms)} ms`);

      const held = new Set<string>();
      for (const [i, r] of results.entries()) {
        assert.match(r.accountId, /^[0-9a-f]{24}$/);
        assert.ok(r.registrationId);
        registered.push(r.accountId);
        const acc = await sys.accounts.getAccount({ accountId: r.accountId });
        assert.equal(acc.status, AccountStatus.ACTIVE, `${r.accountId}: ${acc.statusReason}`);
        assert.equal(acc.platform, "vk");
        assert.equal(acc.hasPhone, true);
        assert.equal(acc.labels.registration_id, r.registrationId);
        const cred = await sys.accounts.getCredentials({ accountId: r.accountId });
        assert.equal(cred.login, `reg_${kind}_${i}`);
        assert.ok(cred.password.length >= 12, "a password was generated");
        assert.match(cred.phone, /^\+\d{7,15}$/);
        assert.ok(cred.additional.session_token, "session_token stored");
        assert.match(cred.additional.platform_user_id ?? "", /^u\d+$/);
        const proxy = await sys.proxies.getProxyForAccount({ accountId: r.accountId });
        assert.ok(proxyIds.has(proxy.id), "the proxy is one of those added");
        held.add(proxy.id);
      }
      assert.equal(held.size, REGISTRATIONS, "each account holds its own proxy");
      assert.equal(new Set(registered).size, REGISTRATIONS);

      // Every price was paid once: the balance dropped by the sum of the rented numbers' prices (10 RUB each by default).
      const prices = await sys.db.query<{ price: number }>("SELECT price FROM sms_activations WHERE service = 'vk'");
      assert.equal(prices.rowCount, REGISTRATIONS);
      const price = prices.rows[0].price;
      assert.equal(price, 10);
      const after = await sms.getBalance({});
      assert.equal(Math.round((before.balance - after.balance) * 100), Math.round(REGISTRATIONS * price * 100), `balance ${before.balance} → ${after.balance}`);

      // The driver went through the proxies: every one carried the sign-up and the confirm.
      const counts = locals.map((p) => p.requests);
      assert.ok(counts.every((c) => c >= 2), `requests per proxy: ${counts.join(",")}`);

      const rows = await sys.db.query<{ status: string; n: number }>("SELECT status, count(*)::int AS n FROM registrations GROUP BY status");
      assert.deepEqual(rows.rows, [{ status: "succeeded", n: REGISTRATIONS }]);
    });

    test("a code that never arrives: success=false at wait_code; the number refunded, the proxy freed, the account DELETED naming the step", async () => {
      await sandboxAdmin(sandboxUrl, "/v1/admin/faults", { codeLossRate: 1 });
      try {
        // The first test's proxies are all taken: this one is the only free one.
        const proxy = await startHttpConnectProxy();
        locals.push(proxy);
        const add = await sys.proxies.addProxies({ proxies: [{ url: proxy.url }] });
        const proxyId = add.results[0].proxyId;
        assert.ok(proxyId, add.results[0].error);
        const before = await sms.getBalance({});

        const t0 = performance.now();
        // kz: the first test holds every vk number of the ru pool (rentals stay busy until they expire).
        const res = await vk.register({ country: "kz", login: `lost_${kind}` }, { timeoutMs: 30_000 });
        const ms = performance.now() - t0;
        assert.equal(res.success, false);
        assert.equal(res.failedStep, "wait_code", res.error);
        assert.match(res.error, /timed out|no code/);
        assert.equal(res.accountId, "");
        assert.ok(res.registrationId);
        assert.ok(ms >= 1900 && ms < 15_000, `answered after ${Math.round(ms)} ms (code timeout 2 s)`);
        assert.ok(proxy.connections >= 1, "sign-up went through the allocated proxy");

        // The call metrics count it as failed, not as a success; the code stays OK (the call itself answered).
        const metrics = await (await fetch(`http://127.0.0.1:${sys.app.httpPort}/metrics`)).text();
        assert.match(metrics, /conveer_grpc_call_outcomes_total\{service="conveer\.VKService",method="Register",outcome="failed"\} 1\n/);
        assert.match(metrics, new RegExp(`conveer_grpc_call_outcomes_total\\{service="conveer\\.VKService",method="Register",outcome="ok"\\} ${REGISTRATIONS}\\n`));
        assert.match(metrics, /conveer_grpc_calls_total\{service="conveer\.VKService",method="Register",code="OK"\} /);

        // Refund: the balance is back.
        assert.equal((await sms.getBalance({})).balance, before.balance);

        // The account: DELETED, the reason naming the step; it holds no proxy.
        const all = await sys.accounts.listAccounts({ platform: "vk", pageSize: 1000 });
        const acc = all.accounts.find((a) => a.labels.registration_id === res.registrationId);
        assert.ok(acc, "the registration's account exists");
        assert.equal(acc.login, `lost_${kind}`);
        assert.equal(acc.status, AccountStatus.DELETED);
        assert.match(acc.statusReason, /wait_code/);
        // History, newest first.
        const history = await sys.accounts.getStatusHistory({ accountId: acc.id });
        assert.deepEqual(
          history.changes.map((c) => c.toStatus),
          ["ACCOUNT_STATUS_DELETED", "ACCOUNT_STATUS_CREATING"],
        );
        assert.match(history.changes[0].reason, /failed at wait_code/);
        assert.equal(history.changes[0].author, "platform-service");
        await rejectsWith(sys.proxies.getProxyForAccount({ accountId: acc.id }), Code.NotFound);

        // The proxy is free again.
        const listed = (await sys.proxies.listProxies({ pageSize: 1000 })).proxies.find((p) => p.id === proxyId);
        assert.ok(listed);
        assert.equal(listed.allocated, 0);

        // The durable record, and the activation: cancelled, so it never yields a code.
        const row = (await sys.db.query<RegistrationRow>("SELECT * FROM registrations WHERE id = $1", [res.registrationId])).rows[0];
        assert.deepEqual([row.status, row.failed_step, row.account_id, row.proxy_id], ["failed", "wait_code", acc.id, proxyId]);
        assert.ok(row.activation_id);
        const code = await sms.getCode({ activationId: row.activation_id, timeoutSeconds: 1 });
        assert.equal(code.success, false);
        assert.match(code.error, /cancelled/);
      } finally {
        await sandboxAdmin(sandboxUrl, "/v1/admin/faults", { codeLossRate: 0 });
      }
    });

    test("a platform with no driver (CONVEER_PLATFORM_DRIVERS=max=none) answers FAILED_PRECONDITION and creates nothing", async () => {
      await rejectsWith(max.register({ login: "nodriver" }), Code.FailedPrecondition, /no driver configured for platform max/);
      const err = await max.checkAccountStatus({ accountId: registered[0] }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof ConnectError);
      assert.deepEqual(err.findDetails(ErrorInfoSchema).map((i) => [i.reason, i.domain, i.metadata.platform]), [["NO_DRIVER", "conveer", "max"]]);
      await rejectsWith(max.executeAction({ accountId: registered[0], actionType: ActionType.VIEW_PROFILE }), Code.FailedPrecondition, /no driver configured for platform max/);
      await rejectsWith(max.checkAccountStatus({ accountId: registered[0] }), Code.FailedPrecondition, /no driver configured for platform max/);
      assert.equal((await sys.accounts.listAccounts({ platform: "max" })).totalCount, 0n);
    });

    test("every one of the eight action types succeeds against the sandbox, through the account's proxy", async () => {
      const accountId = registered[0];
      const proxy = await sys.proxies.getProxyForAccount({ accountId });
      const local = locals.find((p) => p.port === proxy.port)!;
      const requests = local.requests;
      const kinds = [
        ActionType.VIEW_PROFILE,
        ActionType.LIKE_POST,
        ActionType.SUBSCRIBE,
        ActionType.COMMENT,
        ActionType.SEND_MESSAGE,
        ActionType.REPOST,
        ActionType.VIEW_STORIES,
        ActionType.ADD_FRIEND,
      ];
      assert.equal(kinds.length, 8);
      for (const t of kinds) {
        const r = await vk.executeAction({ accountId, actionType: t, params: t === ActionType.COMMENT ? { text: "hello from the test" } : {} });
        assert.equal(r.success, true, `${ActionType[t]}: ${r.error}`);
        assert.equal(r.result?.actionType, `ACTION_TYPE_${ActionType[t]}`);
        assert.ok(r.result?.data.target_id, `${ActionType[t]} names its target`);
      }
      // An explicit target is honoured.
      const other = (await sys.accounts.getCredentials({ accountId: registered[2] })).additional.platform_user_id!;
      const r = await vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE, params: { user_id: other } });
      assert.equal(r.result?.data.target_id, other);
      // The first action without a target reads the feed (later ones reuse it); each then acts.
      assert.ok(local.requests >= requests + 1 + 8 + 1, `the actions went through the account's proxy (${local.requests - requests} requests)`);
      // A target that does not exist: success=false with the platform's reason.
      const missing = await vk.executeAction({ accountId, actionType: ActionType.LIKE_POST, params: { post_id: "p999999" } });
      assert.equal(missing.success, false);
      assert.match(missing.error, /not found/);
    });

    test("a rate-limited account answers RESOURCE_EXHAUSTED mentioning retry", async () => {
      await sandboxAdmin(sandboxUrl, "/v1/admin/rate-limit", { burst: 1, perSecond: 0.01 });
      try {
        const accountId = registered[3];
        const first = await vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE });
        assert.equal(first.success, true, first.error);
        await rejectsWith(vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE }), Code.ResourceExhausted, /retry after \d+ s/);
        // The sandbox's Retry-After reaches the client as RetryInfo, with ErrorInfo RATE_LIMITED.
        const err = await vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE }).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof ConnectError, String(err));
        const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
        assert.ok(delay && delay.seconds >= 1n, `RetryInfo ${JSON.stringify(delay, (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
        assert.deepEqual([err.findDetails(ErrorInfoSchema)[0]?.reason, err.findDetails(ErrorInfoSchema)[0]?.domain], ["RATE_LIMITED", "conveer"]);
        // The account itself is untouched.
        assert.equal((await sys.accounts.getAccount({ accountId })).status, AccountStatus.ACTIVE);
      } finally {
        await sandboxAdmin(sandboxUrl, "/v1/admin/rate-limit", { burst: 20, perSecond: 1 });
      }
    });

    test("a banned account answers FAILED_PRECONDITION and becomes BANNED with a reason; CheckAccountStatus after reinstate brings it back to ACTIVE", async () => {
      const accountId = registered[1];
      const userId = (await sys.accounts.getCredentials({ accountId })).additional.platform_user_id!;
      assert.ok(userId);
      const banned = await sandboxAdmin(sandboxUrl, `/v1/vk/admin/users/${userId}/ban`, { reason: "spam (test)" });
      assert.equal(banned.status, "banned");

      await rejectsWith(vk.executeAction({ accountId, actionType: ActionType.LIKE_POST }), Code.FailedPrecondition, /banned/);
      const acc = await sys.accounts.getAccount({ accountId });
      assert.equal(acc.status, AccountStatus.BANNED);
      assert.match(acc.statusReason, /spam \(test\)/);
      const last = (await sys.accounts.getStatusHistory({ accountId })).changes[0]; // newest first
      assert.equal(last.fromStatus, "ACCOUNT_STATUS_ACTIVE");
      assert.equal(last.toStatus, "ACCOUNT_STATUS_BANNED");
      assert.match(last.reason, /banned.*spam \(test\)/);
      // Not ACTIVE any more: actions are refused before reaching the platform.
      await rejectsWith(vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE }), Code.FailedPrecondition, /BANNED/);

      // Checking while still banned changes nothing.
      const still = await vk.checkAccountStatus({ accountId });
      assert.deepEqual([still.status, still.platformStatus, still.statusChanged], [AccountStatus.BANNED, "banned", false]);
      assert.match(still.reason, /spam \(test\)/);

      await sandboxAdmin(sandboxUrl, `/v1/vk/admin/users/${userId}/reinstate`, {});
      const back = await vk.checkAccountStatus({ accountId });
      assert.equal(back.accountId, accountId);
      assert.deepEqual([back.status, back.platformStatus, back.statusChanged], [AccountStatus.ACTIVE, "active", true]);
      assert.ok(back.checkedAt);
      assert.equal((await sys.accounts.getAccount({ accountId })).status, AccountStatus.ACTIVE);
      const changes = (await sys.accounts.getStatusHistory({ accountId })).changes.map((c) => c.toStatus);
      assert.deepEqual(changes.slice(0, 3), ["ACCOUNT_STATUS_ACTIVE", "ACCOUNT_STATUS_BANNED", "ACCOUNT_STATUS_ACTIVE"]);
      // A second check: nothing to change.
      assert.equal((await vk.checkAccountStatus({ accountId })).statusChanged, false);
      const r = await vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE });
      assert.equal(r.success, true, r.error);
    });

    test("a wrong stored password answers FAILED_PRECONDITION (not UNAVAILABLE) and suspends the account with a reason; the right password and a check bring it back", async () => {
      const accountId = registered[4];
      const { password } = await sys.accounts.getCredentials({ accountId });
      // A stale session makes the service log in again, with the wrong password.
      await sys.accounts.updateCredentials({ accountId, password: "not-the-password-1", additional: { session_token: "stale-session" } });
      await assert.rejects(vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE }), (err: unknown) => {
        assert.ok(err instanceof ConnectError && err.code === Code.FailedPrecondition, String(err));
        assert.match(err.rawMessage, /vk refused the account's login or password/);
        assert.equal(err.findDetails(ErrorInfoSchema)[0]?.reason, "INVALID_CREDENTIALS");
        return true;
      });
      const acc = await sys.accounts.getAccount({ accountId });
      assert.equal(acc.status, AccountStatus.SUSPENDED);
      assert.match(acc.statusReason, /vk refused the stored login or password/);
      // A check with the same wrong password fails the same way and changes nothing more.
      await rejectsWith(vk.checkAccountStatus({ accountId }), Code.FailedPrecondition, /login or password/);
      await sys.accounts.updateCredentials({ accountId, password });
      const back = await vk.checkAccountStatus({ accountId });
      assert.deepEqual([back.status, back.platformStatus, back.statusChanged], [AccountStatus.ACTIVE, "active", true]);
      const r = await vk.executeAction({ accountId, actionType: ActionType.VIEW_PROFILE });
      assert.equal(r.success, true, r.error);
    });

    test("the caller's mistakes: another platform's account, a bad action_type, an unknown account", async () => {
      const tg = await sys.accounts.createAccount({ platform: "telegram", login: `tg_${kind}`, password: "pw-123456" });
      await rejectsWith(vk.executeAction({ accountId: tg.id, actionType: ActionType.VIEW_PROFILE }), Code.FailedPrecondition, /on telegram, not vk/);
      await rejectsWith(vk.checkAccountStatus({ accountId: tg.id }), Code.FailedPrecondition, /on telegram, not vk/);
      const accountId = registered[4];
      await rejectsWith(vk.executeAction({ accountId, actionType: 99 as ActionType }), Code.InvalidArgument, /^action_type must be one of/);
      await rejectsWith(vk.executeAction({ accountId, actionType: ActionType.UNSPECIFIED }), Code.InvalidArgument, /^action_type/);
      await rejectsWith(vk.executeAction({ accountId: "nope", actionType: ActionType.VIEW_PROFILE }), Code.InvalidArgument, /account_id/);
      // An unknown account is NOT_FOUND (AccountService's answer, passed on), not INTERNAL.
      await rejectsWith(vk.executeAction({ accountId: "0123456789abcdef01234567", actionType: ActionType.VIEW_PROFILE }), Code.NotFound, /0123456789abcdef01234567/);
      await rejectsWith(vk.checkAccountStatus({ accountId: "0123456789abcdef01234567" }), Code.NotFound, /0123456789abcdef01234567/);
      await rejectsWith(vk.register({ country: "russia" }), Code.InvalidArgument, /^country/);
      await rejectsWith(vk.register({ login: "a b" }), Code.InvalidArgument, /^login/);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The real CLI, SIGKILLed mid-registration

for (const kind of STORE_KINDS) {
  describe(`conveer start SIGKILLed mid-registration (${kind})`, () => {
    let dataDir: string;
    let dbUrl = "";
    const sessions: Http2SessionManager[] = [];
    const children: Cli[] = [];
    const sandbox = createSandbox({ faults: { codeDelayMs: 60_000 } });
    let proxy: LocalProxy;
    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), "conveer-reg-kill-"));
      if (kind === "postgres") dbUrl = await freshPostgresDatabase();
      proxy = await startSocks5Proxy({ username: "kill", password: "test-pw" });
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await killAll(children);
      await sandbox.close();
      await proxy?.close();
      if (dbUrl) await dropPostgresDatabase(dbUrl);
      await rm(dataDir, { recursive: true, force: true });
    });

    test("the next start marks the registration failed: number cancelled with refund, proxy free, account DELETED", async () => {
      const { url: sandboxUrl, port: sandboxPort } = await sandbox.listen("127.0.0.1:0");
      const { env, http, addr } = await systemEnv(dataDir, {
        CONVEER_MASTER_KEY: "22".repeat(32),
        CONVEER_SANDBOX_URL: sandboxUrl,
        CONVEER_REGISTRATION_LEASE_MS: "1500",
        CONVEER_REGISTRATION_CODE_TIMEOUT_S: "120",
        CONVEER_PROXY_CHECK_TARGET: `127.0.0.1:${sandboxPort}`,
        CONVEER_PROXY_ALLOW_PRIVATE: "true",
        ...(dbUrl ? { DATABASE_URL: dbUrl } : {}),
      });
      const client = <S extends Parameters<typeof remoteClient>[0]>(s: S, name: ServiceName) => remoteClient(s, { addr: addr(name), sessions });
      const accounts = client(AccountService, "account");
      const proxies = client(ProxyService, "proxy");
      const sms = client(SMSService, "sms");
      const vk = client(VKService, "vk");

      const first = runCli(["start"], env);
      children.push(first);
      await waitHealthy(first, http);
      const add = await proxies.addProxies({ proxies: [{ url: proxy.url }] });
      const proxyId = add.results[0].proxyId;
      assert.ok(proxyId, add.results[0].error);
      const startBalance = sandbox.state().sms.balanceKop;
      assert.equal((await sms.getBalance({})).balance, startBalance / 100);

      const inflight = vk.register({ login: "killed_midway" }, { timeoutMs: 60_000 }).then(
        (r) => ({ answered: r }),
        (err: unknown) => ({ err }),
      );
      // The sign-up reached the platform (the code is due in 60 s): the registration waits for the code.
      await eventually(() => Object.values(sandbox.state().platforms.vk.signups).some((s) => s.login === "killed_midway"), 15_000, "the sign-up to reach the sandbox");
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(sandbox.state().sms.balanceKop, startBalance - 1000, "one number is rented and paid");
      assert.ok(proxy.connections >= 1, "the sign-up went through the proxy");
      first.proc.kill("SIGKILL");
      assert.equal(await first.exited, "SIGKILL");
      const outcome = await inflight;
      assert.ok("err" in outcome, "the in-flight Register call fails with its server");

      // Nothing cleaned up while no process runs: the rental is still paid for.
      const rental = Object.values(sandbox.state().sms.rentals).find((r) => r.service === "vk")!;
      assert.equal(rental.status, "active");

      const second = runCli(["start"], env);
      children.push(second);
      await waitHealthy(second, http);
      const t0 = performance.now();
      let acc: Awaited<ReturnType<typeof accounts.getAccount>> | undefined;
      await eventually(
        async () => {
          acc = (await accounts.listAccounts({ platform: "vk" })).accounts.find((a) => a.login === "killed_midway");
          return acc?.status === AccountStatus.DELETED;
        },
        10_000,
        "the interrupted registration's account to be DELETED",
      );
      const ms = performance.now() - t0;
      assert.ok(acc);
      assert.match(acc.statusReason, /interrupted at wait_code/);
      // The number: cancelled at the sandbox, the price refunded.
      await eventually(() => sandbox.state().sms.balanceKop === startBalance, 5000, "the refund");
      const after = sandbox.state().sms.rentals[rental.ref];
      assert.deepEqual([after.status, after.refunded], ["cancelled", true]);
      assert.equal((await sms.getBalance({})).balance, startBalance / 100);
      // The proxy: free.
      const listed = (await proxies.listProxies({})).proxies.find((p) => p.id === proxyId)!;
      assert.equal(listed.allocated, 0);
      await rejectsWith(proxies.getProxyForAccount({ accountId: acc.id }), Code.NotFound);
      assert.ok(ms < 10_000, `cleaned up ${Math.round(ms)} ms after the restart was healthy`);
      // One line for the failed registration, naming the step and the reason.
      const line = second.logs().find((l) => l.msg === "registration failed");
      assert.ok(line, second.stdout().slice(-2000));
      assert.match(String(line.reason), /^interrupted at \w+: the process running it stopped$/);
      assert.ok(line.step);

      const { code } = await terminate(second);
      assert.equal(code, 0, second.stderr());

      // The durable record says what happened (read from the store once the process is gone).
      const db: Db = dbUrl ? openPostgres({ url: dbUrl, max: 1 }) : await openPglite(join(dataDir, "pgdata"));
      try {
        const rows = (await db.query<RegistrationRow>("SELECT * FROM registrations")).rows;
        assert.equal(rows.length, 1);
        assert.deepEqual([rows[0].status, rows[0].failed_step, rows[0].account_id, rows[0].proxy_id], ["failed", "wait_code", acc.id, proxyId]);
        assert.match(rows[0].error, /interrupted at wait_code/);
        const act = (await db.query<{ status: number; refunded: boolean; released: boolean }>("SELECT status, refunded, released FROM sms_activations WHERE id = $1", [rows[0].activation_id])).rows[0];
        assert.deepEqual(act, { status: 5, refunded: true, released: true });
      } finally {
        await db.close();
      }
    });
  });
}
