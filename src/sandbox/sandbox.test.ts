import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createSandbox } from "./sandbox.ts";
import type { SandboxOptions } from "./sandbox.ts";
import { createSandboxDriver } from "./sandbox-driver.ts";
import { createSandboxSmsProvider } from "./sandbox-sms-provider.ts";
import type { SandboxSmsProvider } from "./sandbox-sms-provider.ts";
import { DriverError } from "../platforms/driver.ts";
import type { ActionKind, DriverContext, PlatformDriver } from "../platforms/driver.ts";
import { SmsProviderError } from "../sms/provider.ts";
import type { DeliveredSms } from "../sms/provider.ts";
import { AppError } from "../errors.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";
import { startHttpConnectProxy, startRefusingProxy, startSocks5Proxy } from "../../test/support/local-proxies.ts";

const T = { timeout: 20_000 };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A listening sandbox plus an SMS provider on it (both closed after the test). */
async function start(opts: SandboxOptions = {}) {
  const sandbox = createSandbox({ ...opts, faults: { codeDelayMs: 10, ...opts.faults } });
  const { url } = await sandbox.listen("127.0.0.1:0");
  const sms = createSandboxSmsProvider({ baseUrl: url, token: opts.access?.token, backoff: { minMs: 20, maxMs: 200 } });
  cleanups.push(() => sandbox.close(), () => sms.close());
  const inbox = collect(sms);
  await sms.ready();
  return { sandbox, url, sms, inbox };
}

/** Every message the provider delivers, and a way to wait for the one for a rental. */
function collect(sms: SandboxSmsProvider) {
  const got: DeliveredSms[] = [];
  const wake = new Set<() => void>();
  sms.onMessage((m) => {
    got.push(m);
    for (const w of wake) w();
  });
  return {
    got,
    async waitFor(ref: string, ms = 5000): Promise<DeliveredSms> {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = got.find((x) => x.ref === ref);
        if (m) return m;
        if (Date.now() > deadline) assert.fail(`no SMS for ${ref} within ${ms} ms`);
        await new Promise<void>((resolve) => {
          wake.add(resolve);
          setTimeout(resolve, 50).unref();
        }).finally(() => wake.clear());
      }
    },
  };
}

function endpoint(url: string): ProxyEndpoint {
  const u = new URL(url);
  return { protocol: u.protocol.slice(0, -1) as ProxyEndpoint["protocol"], host: u.hostname, port: Number(u.port), username: decodeURIComponent(u.username) || undefined, password: decodeURIComponent(u.password) || undefined };
}

const driverError = (kind: DriverError["kind"]) => (e: unknown) => e instanceof DriverError && e.kind === kind;
const smsError = (kind: SmsProviderError["kind"]) => (e: unknown) => e instanceof SmsProviderError && e.kind === kind;
const post = (url: string, body: unknown = {}) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** Rents a number, signs up, waits for the code, confirms. */
async function register(env: Awaited<ReturnType<typeof start>>, driver: PlatformDriver, login: string, ctx: DriverContext = {}) {
  const rental = await env.sms.rent({ service: driver.platform, country: "ru", operator: "any" });
  const { signupId } = await driver.startSignUp({ login, password: "secret-1", phone: rental.phone, firstName: "Ann", lastName: "Lee", fields: {} }, ctx);
  const m = await env.inbox.waitFor(rental.ref);
  const session = await driver.confirmSignUp(signupId, m.code, ctx);
  await env.sms.finish(rental.ref);
  return { session, rental, signupId, code: m.code };
}

describe("sandbox", () => {
  for (const via of ["http", "socks5"] as const) {
    test(`sign-up by SMS code and all eight actions through a ${via} proxy`, T, async () => {
      const env = await start();
      const proxy = via === "http" ? await startHttpConnectProxy() : await startSocks5Proxy({ username: "u", password: "p" });
      cleanups.push(() => proxy.close());
      const ctx: DriverContext = { proxy: endpoint(proxy.url) };
      const driver = createSandboxDriver("telegram", { baseUrl: env.url });
      const before = { tunnels: proxy.connections, requests: proxy.requests };

      const rental = await env.sms.rent({ service: "telegram", country: "ru", operator: "any" });
      const { signupId } = await driver.startSignUp({ login: "alice", password: "secret-1", phone: rental.phone, firstName: "Alice", lastName: "Doe", fields: { bio: "hi" } }, ctx);
      const m = await env.inbox.waitFor(rental.ref);
      assert.match(m.code, /^\d{6}$/);
      assert.equal(m.phone, rental.phone);
      assert.ok(m.text.includes(m.code) && m.at instanceof Date);
      const wrong = String((Number(m.code) + 1) % 1_000_000).padStart(6, "0");
      await assert.rejects(driver.confirmSignUp(signupId, wrong, ctx), driverError("wrong_code"));
      const session = await driver.confirmSignUp(signupId, m.code, ctx);
      assert.match(session.userId, /^u\d+$/);

      const w = () => env.sandbox.state().platforms.telegram;
      const target = Object.values(w().users).find((u) => u.seeded && Object.values(w().stories).some((s) => s.authorId === u.id))!;
      const p = Object.values(w().posts).find((x) => x.authorId === target.id)!;
      const group = Object.keys(w().groups).find((g) => !w().groups[g].members.includes(session.userId))!;
      const run = (a: ActionKind, params: Record<string, string>) => driver.execute(a, params, session, ctx);
      const me = session.userId;

      assert.equal((await run("view_profile", { user_id: target.id })).data.user_id, target.id);
      assert.equal(w().users[target.id].profileViews, 1);
      assert.equal((await run("like_post", { post_id: p.id })).data.likes, "1");
      assert.deepEqual(w().posts[p.id].likes, [me]);
      await run("subscribe", { group_id: group });
      assert.ok(w().groups[group].members.includes(me) && w().users[me].groups.includes(group));
      const c = await run("comment", { post_id: p.id, text: "hello" });
      assert.deepEqual(w().posts[p.id].comments.map((x) => [x.id, x.authorId, x.text]), [[c.data.comment_id, me, "hello"]]);
      const msg = await run("send_message", { user_id: target.id, text: "hi there" });
      assert.deepEqual(w().messages.map((x) => [x.id, x.from, x.to, x.text]), [[msg.data.message_id, me, target.id, "hi there"]]);
      const rp = await run("repost", { post_id: p.id });
      assert.equal(w().posts[rp.data.repost_id].repostOf, p.id);
      assert.deepEqual(w().posts[p.id].reposts, [rp.data.repost_id]);
      assert.equal((await run("view_stories", { user_id: target.id })).data.viewed, "1");
      assert.ok(Object.values(w().stories).filter((s) => s.authorId === target.id).every((s) => s.viewers.includes(me)));
      assert.equal((await run("add_friend", { user_id: target.id })).data.status, "pending");
      assert.deepEqual(w().friendRequests.map((r) => [r.from, r.to, r.status]), [[me, target.id, "pending"]]);
      // Without a target the driver picks one from the feed.
      const auto = await run("like_post", {});
      assert.ok(w().posts[auto.data.target_id].likes.includes(me));

      const missing: [ActionKind, Record<string, string>][] = [
        ["view_profile", { user_id: "u0" }], ["like_post", { post_id: "nope" }], ["subscribe", { group_id: "nope" }], ["comment", { post_id: "constructor" }],
        ["send_message", { user_id: "nobody" }], ["repost", { post_id: "nope" }], ["view_stories", { user_id: "nobody" }], ["add_friend", { user_id: "nobody" }],
      ];
      for (const [a, params] of missing) await assert.rejects(run(a, params), driverError("not_found"), a);
      assert.deepEqual(await driver.accountStatus(session, ctx), { status: "active", reason: "" });
      // signup, 2 confirms, 8 actions, feed + like, 8 misses, status: every one through the proxy,
      // over one kept-alive tunnel (the calls are sequential).
      assert.equal(proxy.requests - before.requests, 22);
      assert.equal(proxy.connections - before.tunnels, 1);
      await env.sms.finish(rental.ref);
    });
  }

  test("sign-up and login answer invalid, unauthorized, not_found and expired", T, async () => {
    let t = 1_000_000;
    const env = await start({ now: () => t, signupTtlMs: 60_000 });
    const driver = createSandboxDriver("vk", { baseUrl: env.url });
    const { session } = await register(env, driver, "bob");
    const input = { login: "BOB", password: "secret-1", phone: "+79990000000", firstName: "", lastName: "", fields: {} };
    await assert.rejects(driver.startSignUp(input, {}), driverError("invalid"), "login taken (case-insensitive)");
    await assert.rejects(driver.startSignUp({ ...input, login: "carol", phone: "12" }, {}), driverError("invalid"));
    await assert.rejects(driver.startSignUp({ ...input, login: "carol", fields: { birth_date: "yesterday" } }, {}), driverError("invalid"));
    await assert.rejects(driver.confirmSignUp("su_nope", "123456", {}), driverError("not_found"));
    await assert.rejects(driver.login("bob", "wrong-password", {}), driverError("unauthorized"));
    assert.equal((await driver.login("bob", "secret-1", {})).userId, session.userId);
    const { signupId } = await driver.startSignUp({ ...input, login: "carol" }, {});
    t += 61_000;
    await assert.rejects(driver.confirmSignUp(signupId, "000000", {}), driverError("expired"));
    env.sandbox.revokeSessions("vk", session.userId);
    await assert.rejects(driver.execute("view_profile", { user_id: session.userId }, session, {}), driverError("unauthorized"));
  });

  test("rate limit: DriverError rate_limited with retryAfterMs, then allowed again", T, async () => {
    let t = 5_000_000;
    const env = await start({ now: () => t, rateLimit: { burst: 2, perSecond: 0.5 } });
    const driver = createSandboxDriver("mail", { baseUrl: env.url });
    const { session } = await register(env, driver, "dave");
    const target = { user_id: Object.keys(env.sandbox.state().platforms.mail.users)[0] };
    await driver.execute("view_profile", target, session, {});
    await driver.execute("view_profile", target, session, {});
    const err = await driver.execute("view_profile", target, session, {}).catch((e: unknown) => e);
    assert.ok(err instanceof DriverError && err.kind === "rate_limited", String(err));
    assert.equal(err.retryAfterMs, 2000);
    t += 2000;
    await driver.execute("view_profile", target, session, {});
    // Per account: another user has its own bucket.
    const other = await register(env, driver, "erin");
    await driver.execute("view_profile", target, other.session, {});
  });

  test("idempotency_key: a repeat answers the first run (no second comment, no rate-limit token); another account's key is refused", T, async () => {
    const env = await start({ rateLimit: { burst: 1, perSecond: 0.001 } });
    const driver = createSandboxDriver("vk", { baseUrl: env.url });
    const { session } = await register(env, driver, "ida");
    const postId = Object.keys(env.sandbox.state().platforms.vk.posts)[0];
    const params = { post_id: postId, idempotency_key: "task-1:0" };
    const first = await driver.execute("comment", params, session, {});
    const again = await driver.execute("comment", params, session, {});
    assert.deepEqual(again.data, first.data);
    const vk = env.sandbox.state().platforms.vk;
    assert.equal(vk.posts[postId].comments.length, 1, "the repeat did not comment again");
    assert.equal(vk.idempotency["task-1:0"].replays, 1);
    // The one token went to the first run: a new key is rate limited, a repeat is not.
    await assert.rejects(driver.execute("comment", { post_id: postId, idempotency_key: "task-1:1" }, session, {}), driverError("rate_limited"));
    assert.deepEqual((await driver.execute("comment", params, session, {})).data, first.data);
    const other = await register(env, driver, "ivo");
    await assert.rejects(driver.execute("comment", params, other.session, {}), (e) => driverError("invalid")(e) && /used by another account/.test((e as Error).message));
    const res = await fetch(`${env.url}/v1/vk/posts/${postId}/likes`, { method: "POST", headers: { authorization: `Bearer ${session.sessionToken}`, "idempotency-key": "a b" } });
    assert.equal(res.status, 400);
  });

  test("ban and suspend: actions fail with the platform's reason; reinstate restores", T, async () => {
    const env = await start();
    const driver = createSandboxDriver("max", { baseUrl: env.url });
    const { session } = await register(env, driver, "frank");
    const params = { user_id: session.userId };
    const r = await post(`${env.url}/v1/max/admin/users/${session.userId}/ban`, { reason: "spam" });
    assert.deepEqual(await r.json(), { user_id: session.userId, status: "banned", reason: "spam" });
    const err = await driver.execute("view_profile", params, session, {}).catch((e: unknown) => e);
    assert.ok(err instanceof DriverError && err.kind === "banned" && err.message === "spam", String(err));
    assert.deepEqual(await driver.accountStatus(session, {}), { status: "banned", reason: "spam" });
    env.sandbox.suspend("max", session.userId, "review");
    await assert.rejects(driver.execute("like_post", {}, session, {}), driverError("suspended"));
    assert.deepEqual(await driver.accountStatus(session, {}), { status: "suspended", reason: "review" });
    assert.equal((await post(`${env.url}/v1/max/admin/users/${session.userId}/reinstate`)).status, 200);
    await driver.execute("view_profile", params, session, {});
    assert.equal((await post(`${env.url}/v1/max/admin/users/u0/ban`)).status, 404);
  });

  test("codes that never arrive; faults changed at runtime over HTTP", T, async () => {
    const env = await start({ faults: { codeLossRate: 1, codeDelayMs: 0 } });
    const driver = createSandboxDriver("vk", { baseUrl: env.url });
    const rental = await env.sms.rent({ service: "vk", country: "ru", operator: "" });
    const { signupId } = await driver.startSignUp({ login: "gina", password: "secret-1", phone: rental.phone, firstName: "", lastName: "", fields: {} }, {});
    await sleep(200);
    assert.equal(env.inbox.got.length, 0);
    assert.equal(env.sandbox.state().platforms.vk.signups[signupId].sentAt, null);
    assert.deepEqual(await env.sms.cancel(rental.ref), { refunded: true });
    assert.equal(await env.sms.balance(), 1000);

    const set = await post(`${env.url}/v1/admin/faults`, { codeLossRate: 0, codeDelayMs: 30 });
    assert.equal(((await set.json()) as { codeDelayMs: number }).codeDelayMs, 30);
    assert.equal((await post(`${env.url}/v1/admin/faults`, { errorRate: 2 })).status, 400);
    await register(env, driver, "gina");

    env.sandbox.setFaults({ errorRate: 1 });
    await assert.rejects(driver.login("gina", "secret-1", {}), driverError("unavailable"));
    env.sandbox.setFaults({ errorRate: 0, latency: { minMs: 300, maxMs: 300 } });
    const slow = createSandboxDriver("vk", { baseUrl: env.url, timeoutMs: 100 });
    await assert.rejects(slow.login("gina", "secret-1", {}), driverError("unavailable"));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(driver.login("gina", "secret-1", { signal: ac.signal }), (e: unknown) => e instanceof AppError && e.code === "CANCELLED");
    const refusing = await startRefusingProxy();
    await assert.rejects(driver.login("gina", "secret-1", { proxy: endpoint(refusing.url) }), driverError("unavailable"));
  });

  test("rentals: balance arithmetic in kopecks, refund on cancel only without a code, expiry refunds", T, async () => {
    let t = 7_000_000;
    const env = await start({ now: () => t, sms: { startBalance: 0.3, price: 0.1, numbersPerPool: 2, rentalTtlMs: 60_000 } });
    const rent = (country = "ru", service = "vk") => env.sms.rent({ service, country, operator: "any" });
    const r1 = await rent();
    const r2 = await rent();
    assert.notEqual(r1.phone, r2.phone);
    assert.equal(r1.price, 0.1);
    assert.ok(r1.expiresAt.getTime() === t + 60_000);
    const r3 = await rent("kz");
    assert.equal(await env.sms.balance(), 0);
    await assert.rejects(rent("by"), smsError("insufficient_balance"));
    await assert.rejects(rent("ru", "elsewhere"), smsError("unknown_service"));
    assert.equal(env.sandbox.topUp(1), 1);
    await assert.rejects(rent("ru"), smsError("no_numbers"));
    await assert.rejects(env.sms.cancel("rent_nope"), smsError("not_found"));

    assert.deepEqual(await env.sms.cancel(r1.ref), { refunded: true });
    assert.deepEqual(await env.sms.cancel(r1.ref), { refunded: true }, "cancel is idempotent");
    assert.equal(await env.sms.balance(), 1.1);
    assert.ok(env.sandbox.sendSms("vk", r2.phone, "code 4321"));
    assert.equal((await env.inbox.waitFor(r2.ref)).code, "4321");
    assert.deepEqual(await env.sms.cancel(r2.ref), { refunded: false });
    assert.equal(await env.sms.balance(), 1.1);
    await env.sms.finish(r3.ref);
    assert.deepEqual(await env.sms.cancel(r3.ref), { refunded: false });
    assert.equal(env.sandbox.sendSms("vk", r3.phone, "late 1111"), null, "a finished rental gets nothing");

    const r4 = await rent(); // the number r1 freed
    assert.equal(await env.sms.balance(), 1);
    t += 60_001;
    assert.equal(await env.sms.balance(), 1.1, "an expired rental without a code is refunded");
    assert.equal(env.sandbox.state().sms.rentals[r4.ref].status, "expired");
  });

  test("persistence: users, sessions, likes, balance and a pending code survive close and re-create", T, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "conveer-sandbox-"));
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const dataFile = path.join(dir, "world.json");
    const env1 = await start({ dataFile });
    const d1 = createSandboxDriver("vk", { baseUrl: env1.url });
    const { session } = await register(env1, d1, "hank");
    const liked = await d1.execute("like_post", {}, session, {});
    env1.sandbox.setFaults({ codeDelayMs: 300 });
    const rental = await env1.sms.rent({ service: "vk", country: "ru", operator: "any" });
    const { signupId } = await d1.startSignUp({ login: "ivy", password: "secret-1", phone: rental.phone, firstName: "", lastName: "", fields: {} }, {});
    await env1.sms.close();
    await env1.sandbox.close();
    assert.deepEqual(fs.readdirSync(dir), ["world.json"], "no temp file left behind");

    const env2 = await start({ dataFile });
    const d2 = createSandboxDriver("vk", { baseUrl: env2.url });
    assert.deepEqual(await d2.accountStatus(session, {}), { status: "active", reason: "" });
    assert.ok(env2.sandbox.state().platforms.vk.posts[liked.data.target_id].likes.includes(session.userId));
    assert.equal(await env2.sms.balance(), 980);
    const m = await env2.inbox.waitFor(rental.ref);
    const ivy = await d2.confirmSignUp(signupId, m.code, {});
    await d2.execute("view_profile", { user_id: session.userId }, ivy, {});
    await env2.sandbox.close();
    const saved = JSON.parse(fs.readFileSync(dataFile, "utf8")) as { platforms: { vk: { users: Record<string, { login: string }> } } };
    assert.ok(Object.values(saved.platforms.vk.users).some((u) => u.login === "ivy"));
  });

  test("SSE: one stream per provider; a dropped stream reconnects with Last-Event-ID and misses nothing", T, async () => {
    const env = await start();
    const second: DeliveredSms[] = [];
    const off = env.sms.onMessage((m) => second.push(m));
    const rentals = await Promise.all([1, 2, 3, 4].map(() => env.sms.rent({ service: "mail", country: "ru", operator: "any" })));
    env.sandbox.sendSms("mail", rentals[0].phone, "code 100001");
    await env.inbox.waitFor(rentals[0].ref);
    assert.equal(env.sandbox.streamStats().connects, 1);

    env.sandbox.dropEventStreams();
    for (const [i, r] of rentals.slice(1).entries()) env.sandbox.sendSms("mail", r.phone, `code ${200001 + i}`);
    for (const r of rentals) await env.inbox.waitFor(r.ref);
    assert.deepEqual(env.inbox.got.map((m) => m.code), ["100001", "200001", "200002", "200003"], "each once, in order");
    assert.equal(second.length, 4);
    const stats = env.sandbox.streamStats();
    assert.equal(stats.connects, 2);
    assert.deepEqual(stats.lastEventIds, ["1"]);

    off();
    await env.sms.close();
    for (let i = 0; i < 50 && env.sandbox.streamStats().open > 0; i++) await sleep(10);
    assert.equal(env.sandbox.streamStats().open, 0, "close() ends the stream");
    await assert.rejects(env.sms.balance(), smsError("unavailable"));
  });

  test("access token: admin and SMS endpoints (event stream included) need it; platform endpoints do not; the provider sends it", T, async () => {
    const token = "sandbox-access-token-0123";
    const env = await start({ access: { token } });
    const call = (method: string, path: string, auth?: string) =>
      fetch(`${env.url}${path}`, { method, headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) }, body: method === "POST" ? "{}" : undefined });
    for (const [method, path] of [["GET", "/v1/admin/faults"], ["POST", "/v1/max/admin/users/u1/suspend"], ["GET", "/v1/sms/balance"], ["GET", "/v1/sms/events"], ["POST", "/v1/sms/admin/top-up"]]) {
      for (const auth of [undefined, "Bearer wrong-token-xxxxxxxx", `Basic ${token}`, `Bearer ${token}x`]) {
        const r = await call(method, path, auth);
        assert.equal(r.status, 401, `${method} ${path} with ${auth}`);
        assert.match(((await r.json()) as { message: string }).message, /CONVEER_SANDBOX_TOKEN/);
      }
    }
    assert.equal((await call("GET", "/v1/admin/faults", `Bearer ${token}`)).status, 200);
    assert.equal((await call("GET", "/v1/sms/balance", `bearer ${token}`)).status, 200);
    // The platform's public surface: sign-up, login and actions need no sandbox token.
    const driver = createSandboxDriver("vk", { baseUrl: env.url });
    const { session } = await register(env, driver, "token_user");
    assert.ok(session.sessionToken);
    await driver.execute("view_profile", {}, session, {});
    // The provider sent the token on every call and on its event stream.
    assert.equal(env.sandbox.streamStats().connects, 1);
    const unauthorized = createSandboxSmsProvider({ baseUrl: env.url, backoff: { minMs: 20, maxMs: 200 } });
    cleanups.push(() => unauthorized.close());
    await assert.rejects(unauthorized.balance(), (e: unknown) => smsError("unavailable")(e) && /CONVEER_SANDBOX_TOKEN/.test((e as Error).message));
  });

  test("access token required only while required() says so (Conveer's open mode)", T, async () => {
    let required = false;
    const env = await start({ access: { token: "sandbox-access-token-0123", required: async () => required } });
    assert.equal((await fetch(`${env.url}/v1/admin/faults`)).status, 200);
    required = true;
    assert.equal((await fetch(`${env.url}/v1/admin/faults`)).status, 401);
  });

  test("without an access token it listens on loopback only, saying how to fix it", T, async () => {
    const open = createSandbox({});
    cleanups.push(() => open.close());
    for (const addr of ["0.0.0.0:0", "[::]:0", "127.0.0.1.nip.io:0"]) {
      await assert.rejects(open.listen(addr), /refusing to listen on .*CONVEER_SANDBOX_TOKEN/);
    }
    const guarded = createSandbox({ access: { token: "sandbox-access-token-0123" } });
    cleanups.push(() => guarded.close());
    const { url } = await guarded.listen("0.0.0.0:0");
    assert.equal((await fetch(`${url}/v1/sms/balance`)).status, 401);
  });
});
