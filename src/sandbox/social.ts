/**
 * The simulated platform's rules as plain functions over the world: sign-up with a code sent over
 * the SMS side, login and sessions, standing (ban, suspend), and the eight actions on users, posts,
 * groups, stories, messages and friend requests. They answer the platform API's JSON bodies and
 * throw SandboxError; http.ts puts them on routes.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { PLATFORMS } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { quote } from "../errors.ts";
import type { SandboxContext } from "./sandbox-context.ts";
import { SandboxError, bad, missing, own, str } from "./sandbox-error.ts";
import type { Body } from "./sandbox-error.ts";
import { sendSms } from "./sms-side.ts";
import { changed, nextId } from "./sandbox-world.ts";
import type { SandboxPlatformState, SandboxPost, SandboxUser, SandboxUserStatus } from "./sandbox-world.ts";

/** An action's answer: its JSON body, and whether it made something new (the HTTP side answers 201 then). */
export type Outcome = { created: boolean; body: Record<string, unknown> };

const LOGIN = /^[A-Za-z0-9._-]{3,64}$/;

function hashPassword(pw: string): string {
  const salt = randomBytes(8).toString("hex");
  return `${salt}:${createHash("sha256").update(salt + pw).digest("hex")}`;
}
function checkPassword(stored: string, pw: string): boolean {
  const [salt, hash] = stored.split(":");
  if (!salt || !hash) return false;
  return timingSafeEqual(Buffer.from(hash, "hex"), createHash("sha256").update(salt + pw).digest());
}

// -------------------------------------------------------------------------------------------
// Sign-up codes

/** Sends sign-up `signupId`'s code over the SMS side after `delayMs` (unless confirmed or lost by then). */
export function scheduleCode(ctx: SandboxContext, p: Platform, signupId: string, delayMs: number): void {
  const timer = setTimeout(() => {
    ctx.codeTimers.delete(timer);
    const s = ctx.world.platforms[p].signups[signupId];
    if (!s || s.done || s.deliverAt === null) return;
    s.deliverAt = null;
    s.sentAt = ctx.now();
    sendSms(ctx, p, s.phone, `Sandbox ${p}: your confirmation code is ${s.code}. Do not share it.`);
    changed(ctx);
  }, Math.max(0, delayMs));
  ctx.codeTimers.add(timer);
}

/** Schedules the codes still due from before a restart, to go out when they would have. */
export function resumeCodes(ctx: SandboxContext): void {
  for (const p of PLATFORMS) for (const s of Object.values(ctx.world.platforms[p].signups)) if (!s.done && s.deliverAt !== null) scheduleCode(ctx, p, s.id, s.deliverAt - ctx.now());
}

/** Cancels the pending code deliveries (those persisted resume on reload). */
export function cancelCodes(ctx: SandboxContext): void {
  for (const t of ctx.codeTimers) clearTimeout(t);
  ctx.codeTimers.clear();
}

// -------------------------------------------------------------------------------------------
// Accounts and sessions

function addToWorld(ctx: SandboxContext, p: Platform, u: SandboxUser): void {
  ctx.world.platforms[p].users[u.id] = u;
  ctx.byLogin.get(p)!.set(u.login.toLowerCase(), u.id);
}
const loginTaken = (ctx: SandboxContext, p: Platform, login: string) => ctx.byLogin.get(p)!.has(login.toLowerCase());
const loginTakenError = (login: string) => new SandboxError("login_taken", `login ${quote(login)} is taken`);

/** A new account's login and password from a body: checked, and the login not taken. */
function newLogin(ctx: SandboxContext, p: Platform, b: Body): { login: string; password: string } {
  const login = str(b, "login", { required: true, max: 64 });
  const password = str(b, "password", { required: true });
  if (!LOGIN.test(login)) throw bad("login must be 3-64 letters, digits, . _ or -");
  if (password.length < 6) throw bad("password must be at least 6 characters");
  if (loginTaken(ctx, p, login)) throw loginTakenError(login);
  return { login, password };
}

/** A fresh user record (no friends, groups or views). */
function newUser(ctx: SandboxContext, f: Pick<SandboxUser, "login" | "pw" | "phone" | "firstName" | "lastName" | "fields">): SandboxUser {
  return { id: nextId(ctx.world, "u"), ...f, status: "active", reason: "", friends: [], groups: [], profileViews: 0, seeded: false, createdAt: ctx.now() };
}

function newSession(ctx: SandboxContext, p: Platform, userId: string): { user_id: string; session_token: string } {
  const t = randomBytes(24).toString("base64url");
  ctx.world.platforms[p].sessions[t] = { userId, expiresAt: ctx.now() + ctx.sessionTtlMs };
  changed(ctx);
  return { user_id: userId, session_token: t };
}

/** Starts a sign-up: checks the body, draws the code and schedules its SMS (unless the code-loss fault drops it). */
export function signUp(ctx: SandboxContext, p: Platform, b: Body): { signup_id: string; expires_at: string } {
  const { now, faults } = ctx;
  const { login, password } = newLogin(ctx, p, b);
  const phone = str(b, "phone", { required: true, max: 20 });
  if (!/^\+?\d{7,15}$/.test(phone)) throw bad("phone must be 7-15 digits with an optional +");
  const fields = (b.fields ?? {}) as Record<string, unknown>;
  if (typeof fields !== "object" || Array.isArray(fields) || Object.values(fields).some((v) => typeof v !== "string")) throw bad("fields must map names to strings");
  if (p === "vk" && fields.birth_date && !/^\d{4}-\d{2}-\d{2}$/.test(fields.birth_date as string)) throw bad("fields.birth_date must be YYYY-MM-DD");
  if (p === "vk" && fields.gender && !["male", "female"].includes(fields.gender as string)) throw bad("fields.gender must be male or female");
  const id = `su_${randomBytes(8).toString("hex")}`;
  const code = String(Math.floor(ctx.random() * 1_000_000)).padStart(6, "0");
  const lost = ctx.random() < faults.codeLossRate;
  ctx.world.platforms[p].signups[id] = {
    id, login, pw: hashPassword(password), phone, firstName: str(b, "first_name"), lastName: str(b, "last_name"), fields: fields as Record<string, string>,
    code, expiresAt: now() + ctx.signupTtlMs, attempts: 0, deliverAt: lost ? null : now() + faults.codeDelayMs, sentAt: null, done: false,
  };
  if (!lost) scheduleCode(ctx, p, id, faults.codeDelayMs);
  changed(ctx);
  return { signup_id: id, expires_at: new Date(now() + ctx.signupTtlMs).toISOString() };
}

/** Confirms a sign-up with its code (five wrong codes end it): makes the user and logs them in. */
export function confirm(ctx: SandboxContext, p: Platform, id: string, b: Body): { user_id: string; session_token: string } {
  const s = own(ctx.world.platforms[p].signups, id);
  if (!s) throw missing("sign-up", id);
  if (s.done) throw new SandboxError("already_confirmed", `sign-up ${id} is already confirmed`);
  if (ctx.now() > s.expiresAt) throw new SandboxError("expired", `sign-up ${id} expired`);
  if (s.attempts >= 5) throw new SandboxError("expired", `sign-up ${id} had too many wrong codes`);
  if (str(b, "code", { required: true }) !== s.code) {
    s.attempts++;
    changed(ctx);
    throw new SandboxError("wrong_code", "the confirmation code is wrong");
  }
  if (loginTaken(ctx, p, s.login)) throw loginTakenError(s.login);
  s.done = true;
  const u = newUser(ctx, { login: s.login, pw: s.pw, phone: s.phone, firstName: s.firstName, lastName: s.lastName, fields: s.fields });
  addToWorld(ctx, p, u);
  return newSession(ctx, p, u.id);
}

/** An active user with a password and no phone, made by the admin (accounts that exist outside Conveer). */
export function addUser(ctx: SandboxContext, p: Platform, b: Body): { user_id: string; login: string } {
  const { login, password } = newLogin(ctx, p, b);
  const u = newUser(ctx, { login, pw: hashPassword(password), phone: "", firstName: str(b, "first_name"), lastName: str(b, "last_name"), fields: {} });
  addToWorld(ctx, p, u);
  changed(ctx);
  return { user_id: u.id, login };
}

/** Logs in with login (any case) and password: a new session. */
export function login(ctx: SandboxContext, p: Platform, b: Body): { user_id: string; session_token: string } {
  const name = str(b, "login", { required: true }).toLowerCase();
  const pw = str(b, "password", { required: true });
  const id = ctx.byLogin.get(p)!.get(name);
  const u = id === undefined ? undefined : ctx.world.platforms[p].users[id];
  if (!u || !u.pw || !checkPassword(u.pw, pw)) throw new SandboxError("unauthorized", "wrong login or password");
  return newSession(ctx, p, u.id);
}

/** The user whose session `token` is, or unauthorized when it is unknown or expired. */
export function sessionUser(ctx: SandboxContext, p: Platform, token: string): SandboxUser {
  const s = own(ctx.world.platforms[p].sessions, token);
  if (!s || ctx.now() > s.expiresAt) throw new SandboxError("unauthorized", "the session is missing or expired; log in again");
  return ctx.world.platforms[p].users[s.userId];
}

/** Refuses a banned or suspended user (the error names the standing and gives the reason). */
export function checkStanding(u: SandboxUser): void {
  if (u.status !== "active") throw new SandboxError(u.status, u.reason || `the account is ${u.status}`);
}

/** Ends a user's sessions (the next call answers unauthorized). */
export function revokeSessions(ctx: SandboxContext, p: Platform, userId: string): void {
  const sessions = ctx.world.platforms[p].sessions;
  for (const [t, s] of Object.entries(sessions)) if (s.userId === userId) delete sessions[t];
  changed(ctx);
}

/** Sets a user's standing (reason defaults to the standing; cleared when active). */
export function setStatus(ctx: SandboxContext, p: Platform, id: string, status: SandboxUserStatus, reason: string): SandboxUser {
  const u = own(ctx.world.platforms[p].users, id);
  if (!u) throw missing("user", id);
  u.status = status;
  u.reason = status === "active" ? "" : reason || status;
  changed(ctx);
  return u;
}

/** A user's standing as the admin endpoints answer it. */
export const standingView = (u: SandboxUser) => ({ user_id: u.id, status: u.status, reason: u.reason });

/** Who the session's user is. */
export const me = (u: SandboxUser) => ({ user_id: u.id, login: u.login, status: u.status, reason: u.reason });

/** What `u` can act on: other active users, the last 100 posts by others, and the groups. */
export function feed(s: SandboxPlatformState, u: SandboxUser): { users: string[]; posts: string[]; groups: string[] } {
  return {
    users: Object.values(s.users).filter((x) => x.id !== u.id && x.status === "active").map((x) => x.id),
    posts: Object.values(s.posts).filter((x) => x.authorId !== u.id).slice(-100).map((x) => x.id),
    groups: Object.keys(s.groups),
  };
}

// -------------------------------------------------------------------------------------------
// The eight actions: `u` (active, within its rate) acts in namespace `s`

function userOf(s: SandboxPlatformState, id: string): SandboxUser {
  const u = own(s.users, id);
  if (!u) throw missing("user", id);
  return u;
}
function postOf(s: SandboxPlatformState, id: string): SandboxPost {
  const post = own(s.posts, id);
  if (!post) throw missing("post", id);
  return post;
}
const notSelf = (u: SandboxUser, t: SandboxUser, what: string) => {
  if (u.id === t.id) throw bad(`cannot ${what} yourself`);
};
const addOnce = (list: string[], id: string) => (list.includes(id) ? false : (list.push(id), true));

/** Views user `id`'s profile (counted). */
export function viewProfile(s: SandboxPlatformState, id: string): Outcome {
  const t = userOf(s, id);
  t.profileViews++;
  const posts = Object.values(s.posts).filter((x) => x.authorId === id).length;
  return { created: false, body: { user_id: t.id, name: `${t.firstName} ${t.lastName}`.trim(), friends: t.friends.length, posts, views: t.profileViews } };
}

/** Views user `id`'s stories; `viewed` counts those `u` had not seen. */
export function viewStories(s: SandboxPlatformState, u: SandboxUser, id: string): Outcome {
  userOf(s, id);
  const stories = Object.values(s.stories).filter((x) => x.authorId === id);
  const viewed = stories.filter((x) => addOnce(x.viewers, u.id)).length;
  return { created: false, body: { user_id: id, stories: stories.length, viewed } };
}

/** Likes post `id` (once). */
export function like(s: SandboxPlatformState, u: SandboxUser, id: string): Outcome {
  const post = postOf(s, id);
  const added = addOnce(post.likes, u.id);
  return { created: added, body: { post_id: id, likes: post.likes.length, already: !added } };
}

/** Comments on post `id` with body.text. */
export function comment(ctx: SandboxContext, s: SandboxPlatformState, u: SandboxUser, id: string, b: Body): Outcome {
  const post = postOf(s, id);
  const c = { id: nextId(ctx.world, "c"), authorId: u.id, text: str(b, "text", { required: true, max: 2000 }), at: ctx.now() };
  post.comments.push(c);
  return { created: true, body: { post_id: id, comment_id: c.id, comments: post.comments.length } };
}

/** Reposts post `id`, with an optional body.text. */
export function repost(ctx: SandboxContext, s: SandboxPlatformState, u: SandboxUser, id: string, b: Body): Outcome {
  const orig = postOf(s, id);
  const post: SandboxPost = { id: nextId(ctx.world, "p"), authorId: u.id, text: str(b, "text", { max: 2000 }), likes: [], comments: [], reposts: [], repostOf: id, at: ctx.now() };
  s.posts[post.id] = post;
  orig.reposts.push(post.id);
  return { created: true, body: { post_id: id, repost_id: post.id, reposts: orig.reposts.length } };
}

/** Joins group `id` (once). */
export function joinGroup(s: SandboxPlatformState, u: SandboxUser, id: string): Outcome {
  const g = own(s.groups, id);
  if (!g) throw missing("group", id);
  const added = addOnce(g.members, u.id);
  addOnce(u.groups, id);
  return { created: added, body: { group_id: id, members: g.members.length, already: !added } };
}

/** Sends user `id` a message with body.text. */
export function sendMessage(ctx: SandboxContext, s: SandboxPlatformState, u: SandboxUser, id: string, b: Body): Outcome {
  notSelf(u, userOf(s, id), "message");
  const m = { id: nextId(ctx.world, "m"), from: u.id, to: id, text: str(b, "text", { required: true, max: 4000 }), at: ctx.now() };
  s.messages.push(m);
  return { created: true, body: { user_id: id, message_id: m.id } };
}

/**
 * Asks user `id` to be friends: already friends or already asked answers as it stands; when `id`
 * had asked `u`, this accepts and they are friends; otherwise a new pending request.
 */
export function befriend(ctx: SandboxContext, s: SandboxPlatformState, u: SandboxUser, id: string): Outcome {
  const t = userOf(s, id);
  notSelf(u, t, "befriend");
  if (u.friends.includes(id)) return { created: false, body: { user_id: id, status: "friends" } };
  const mine = s.friendRequests.find((r) => r.from === u.id && r.to === id && r.status === "pending");
  if (mine) return { created: false, body: { user_id: id, request_id: mine.id, status: "pending" } };
  const theirs = s.friendRequests.find((r) => r.from === id && r.to === u.id && r.status === "pending");
  if (theirs) {
    theirs.status = "accepted";
    u.friends.push(id);
    t.friends.push(u.id);
    return { created: false, body: { user_id: id, request_id: theirs.id, status: "friends" } };
  }
  const r = { id: nextId(ctx.world, "f"), from: u.id, to: id, status: "pending" as const, at: ctx.now() };
  s.friendRequests.push(r);
  return { created: true, body: { user_id: id, request_id: r.id, status: "pending" } };
}
