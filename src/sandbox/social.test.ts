import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createSandboxContext } from "./sandbox-context.ts";
import type { SandboxContext } from "./sandbox-context.ts";
import { SandboxError } from "./sandbox-error.ts";
import type { SandboxErrorCode } from "./sandbox-error.ts";
import * as social from "./social.ts";
import { rent } from "./sms-side.ts";

/** A context on a fake clock, with the sign-up codes it schedules cancelled after each test. */
const contexts: SandboxContext[] = [];
function world(overrides: { codeLossRate?: number } = {}) {
  const clock = { t: Date.parse("2026-01-01T00:00:00Z") };
  const ctx = createSandboxContext({ now: () => clock.t, faults: { codeDelayMs: 0, ...overrides } });
  contexts.push(ctx);
  return { ctx, clock, vk: ctx.world.platforms.vk };
}
afterEach(() => {
  for (const ctx of contexts.splice(0)) social.cancelCodes(ctx);
});
const refused = (code: SandboxErrorCode, message?: RegExp) => (err: unknown) =>
  err instanceof SandboxError && err.code === code && (!message || message.test(err.message));

describe("sandbox social rules", () => {
  test("sign-up checks its input, and the code confirms it once into a user with a session", () => {
    const { ctx, vk } = world({ codeLossRate: 1 });
    assert.throws(() => social.signUp(ctx, "vk", { login: "ab", password: "secret1", phone: "+79990000001" }), refused("invalid", /login must be/));
    assert.throws(() => social.signUp(ctx, "vk", { login: "anna", password: "short", phone: "+79990000001" }), refused("invalid", /password/));
    assert.throws(() => social.signUp(ctx, "vk", { login: "anna", password: "secret1", phone: "x" }), refused("invalid", /phone/));
    assert.throws(() => social.signUp(ctx, "vk", { login: "anna", password: "secret1", phone: "+79990000001", fields: { gender: "x" } }), refused("invalid", /gender/));
    const { signup_id } = social.signUp(ctx, "vk", { login: "Anna", password: "secret1", phone: "+79990000001" });
    assert.equal(vk.signups[signup_id].deliverAt, null, "a lost code is never scheduled");
    assert.throws(() => social.confirm(ctx, "vk", signup_id, { code: "nope" }), refused("wrong_code"));
    assert.equal(vk.signups[signup_id].attempts, 1);
    const { user_id, session_token } = social.confirm(ctx, "vk", signup_id, { code: vk.signups[signup_id].code });
    assert.equal(social.sessionUser(ctx, "vk", session_token).id, user_id);
    assert.throws(() => social.confirm(ctx, "vk", signup_id, { code: vk.signups[signup_id].code }), refused("already_confirmed"));
    assert.throws(() => social.signUp(ctx, "vk", { login: "anna", password: "secret1", phone: "+79990000001" }), refused("login_taken"));
  });

  test("a sign-up expires, and five wrong codes end it", () => {
    const { ctx, clock, vk } = world({ codeLossRate: 1 });
    const a = social.signUp(ctx, "vk", { login: "late", password: "secret1", phone: "+79990000002" }).signup_id;
    const b = social.signUp(ctx, "vk", { login: "wrong", password: "secret1", phone: "+79990000003" }).signup_id;
    for (let i = 0; i < 5; i++) assert.throws(() => social.confirm(ctx, "vk", b, { code: "x" }), refused("wrong_code"));
    assert.throws(() => social.confirm(ctx, "vk", b, { code: vk.signups[b].code }), refused("expired", /too many/));
    clock.t += ctx.signupTtlMs + 1;
    assert.throws(() => social.confirm(ctx, "vk", a, { code: vk.signups[a].code }), refused("expired"));
    assert.throws(() => social.confirm(ctx, "vk", "constructor", { code: "1" }), refused("not_found"));
  });

  test("the code goes out over the SMS side to the rented number", async () => {
    const { ctx, vk } = world();
    const { phone } = rent(ctx, { service: "vk" });
    const { signup_id } = social.signUp(ctx, "vk", { login: "texted", password: "secret1", phone });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(ctx.world.sms.events.at(-1)?.code, vk.signups[signup_id].code);
    assert.notEqual(vk.signups[signup_id].sentAt, null);
  });

  test("login is case-blind on the login; sessions expire and can be revoked; standing refuses", () => {
    const { ctx, clock } = world();
    const id = social.addUser(ctx, "vk", { login: "Boris", password: "secret1" }).user_id;
    assert.throws(() => social.login(ctx, "vk", { login: "boris", password: "wrong!!" }), refused("unauthorized"));
    assert.throws(() => social.login(ctx, "vk", { login: "vk_seed_1", password: "" }), refused("invalid"));
    const { session_token } = social.login(ctx, "vk", { login: "BORIS", password: "secret1" });
    assert.equal(social.sessionUser(ctx, "vk", session_token).id, id);
    social.revokeSessions(ctx, "vk", id);
    assert.throws(() => social.sessionUser(ctx, "vk", session_token), refused("unauthorized"));
    const again = social.login(ctx, "vk", { login: "boris", password: "secret1" }).session_token;
    clock.t += ctx.sessionTtlMs + 1;
    assert.throws(() => social.sessionUser(ctx, "vk", again), refused("unauthorized"));
    const u = social.setStatus(ctx, "vk", id, "banned", "");
    assert.deepEqual(social.standingView(u), { user_id: id, status: "banned", reason: "banned" });
    assert.throws(() => social.checkStanding(u), refused("banned", /banned/));
    social.setStatus(ctx, "vk", id, "active", "ignored");
    assert.equal(u.reason, "");
    social.checkStanding(u);
    assert.throws(() => social.setStatus(ctx, "vk", "nobody", "suspended", ""), refused("not_found"));
  });

  test("actions: likes and joins happen once; comments, reposts and messages are new each time", () => {
    const { ctx, vk } = world();
    const u = vk.users[social.addUser(ctx, "vk", { login: "actor", password: "secret1" }).user_id];
    const post = Object.keys(vk.posts)[0];
    const group = Object.keys(vk.groups)[1];
    assert.deepEqual(social.like(vk, u, post), { created: true, body: { post_id: post, likes: 1, already: false } });
    assert.deepEqual(social.like(vk, u, post), { created: false, body: { post_id: post, likes: 1, already: true } });
    assert.equal(social.joinGroup(vk, u, group).created, true);
    assert.equal(social.joinGroup(vk, u, group).body.already, true);
    assert.ok(u.groups.includes(group));
    assert.equal(social.comment(ctx, vk, u, post, { text: "hi" }).body.comments, 1);
    assert.throws(() => social.comment(ctx, vk, u, post, {}), refused("invalid", /text is required/));
    const r = social.repost(ctx, vk, u, post, {}).body;
    assert.equal(vk.posts[r.repost_id as string].repostOf, post);
    const other = vk.posts[post].authorId;
    assert.equal(social.sendMessage(ctx, vk, u, other, { text: "hello" }).created, true);
    assert.throws(() => social.sendMessage(ctx, vk, u, u.id, { text: "me" }), refused("invalid", /yourself/));
    const seen = social.viewProfile(vk, other).body;
    assert.equal(social.viewProfile(vk, other).body.views, (seen.views as number) + 1);
    assert.equal(social.viewStories(vk, u, Object.values(vk.stories)[0].authorId).body.viewed, 1);
    assert.equal(social.viewStories(vk, u, Object.values(vk.stories)[0].authorId).body.viewed, 0);
    assert.throws(() => social.like(vk, u, "toString"), refused("not_found"));
    assert.throws(() => social.joinGroup(vk, u, "g0"), refused("not_found"));
    const feed = social.feed(vk, u);
    assert.ok(!feed.users.includes(u.id));
    assert.equal(feed.groups.length, 4);
  });

  test("friend requests: ask, ask again, the other asks back and they are friends", () => {
    const { ctx, vk } = world();
    const a = vk.users[social.addUser(ctx, "vk", { login: "alice", password: "secret1" }).user_id];
    const b = vk.users[social.addUser(ctx, "vk", { login: "bob", password: "secret1" }).user_id];
    const asked = social.befriend(ctx, vk, a, b.id);
    assert.equal(asked.created, true);
    assert.equal(asked.body.status, "pending");
    assert.deepEqual(social.befriend(ctx, vk, a, b.id), { created: false, body: { user_id: b.id, request_id: asked.body.request_id, status: "pending" } });
    assert.deepEqual(social.befriend(ctx, vk, b, a.id), { created: false, body: { user_id: a.id, request_id: asked.body.request_id, status: "friends" } });
    assert.deepEqual([a.friends, b.friends], [[b.id], [a.id]]);
    assert.deepEqual(social.befriend(ctx, vk, a, b.id), { created: false, body: { user_id: b.id, status: "friends" } });
    assert.throws(() => social.befriend(ctx, vk, a, a.id), refused("invalid", /befriend yourself/));
  });
});
