/**
 * The sandbox: a LOCAL simulated social platform that Conveer starts itself (or `conveer sandbox`
 * runs standalone). Four namespaces (/v1/vk, /v1/telegram, /v1/mail, /v1/max) with users, posts,
 * groups, stories, messages and friend requests; sign-up confirmed by a code sent over the
 * sandbox's own SMS side (/v1/sms: a pool of numbers, a balance, an SSE stream of messages).
 * Faults (latency, random 503s, slow or lost codes) and per-account rate limits are configurable.
 * It talks to nothing outside this process.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { isLoopback } from "../config/config.ts";
import type { Platform } from "../domain.ts";
import { readWorldFile, writeWorldFile } from "./sandbox-world.ts";
import type { SandboxPlatformState, SandboxPost, SandboxRental, SandboxSmsEvent, SandboxUser, SandboxUserStatus, SandboxWorld } from "./sandbox-world.ts";
import { quote } from "../errors.ts";

/** Fault injection; latency and errorRate apply to platform calls (not admin, not /v1/sms). */
export type Faults = {
  /** Added delay per platform request, uniform in [minMs, maxMs] (equal values: fixed). */
  latency: { minMs: number; maxMs: number };
  /** Probability (0..1) that a platform request answers 503. */
  errorRate: number;
  /** Delay between sign-up and the code's delivery. */
  codeDelayMs: number;
  /** Probability (0..1) that a sign-up code is never sent. */
  codeLossRate: number;
};

/** Per-account token bucket for the eight actions: `burst` tokens, refilled at `perSecond`. */
export type RateLimit = { burst: number; perSecond: number };

/** The SMS side: countries with number pools (one per service and country), prices and balance in RUB. */
export type SmsSettings = { startBalance: number; price: number; countries: string[]; numbersPerPool: number; rentalTtlMs: number };

/** Options of createSandbox; everything has a default. */
export type SandboxOptions = {
  /** JSON file the world is loaded from (refused when damaged) and saved to (debounced, atomic, fsynced); none: memory only. */
  dataFile?: string;
  faults?: Partial<Faults>;
  /** Clock for expiry, sessions and rate limits (epoch ms); timers use real time. */
  now?: () => number;
  log?: Logger;
  /** Source of randomness for codes and faults (0..1). */
  random?: () => number;
  /** Default {burst: 20, perSecond: 1}. */
  rateLimit?: Partial<RateLimit>;
  /** Default 1000.00 RUB, 10.00 per number, ru/kz/by, 50 numbers per pool, 20 min rentals. */
  sms?: Partial<SmsSettings>;
  /** Sign-up lifetime (default 15 min), session lifetime (30 days), save debounce (250 ms), SSE heartbeat (15 s). */
  signupTtlMs?: number;
  sessionTtlMs?: number;
  saveDelayMs?: number;
  heartbeatMs?: number;
  /**
   * Who may use the admin endpoints (/v1/admin/*, /v1/{platform}/admin/*) and the SMS side
   * (/v1/sms/*): with a token, a request must send `authorization: Bearer <token>` whenever
   * `required()` says so (default: always). Without one, anyone who reaches the port may, so
   * listen() then refuses addresses beyond loopback. The platform endpoints are the simulated
   * platform's public surface (its users sign up and log in there) and never take this token.
   */
  access?: SandboxAccess;
};

/** The sandbox's admin and SMS token, and when it is required (see SandboxOptions.access). */
export type SandboxAccess = { token: string; required?: () => boolean | Promise<boolean> };

/** A running (or listenable) sandbox. */
export type Sandbox = ReturnType<typeof createSandbox>;

const DEFAULT_FAULTS: Faults = { latency: { minMs: 0, maxMs: 0 }, errorRate: 0, codeDelayMs: 300, codeLossRate: 0 };
const DEFAULT_SMS: SmsSettings = { startBalance: 1000, price: 10, countries: ["ru", "kz", "by"], numbersPerPool: 50, rentalTtlMs: 20 * 60_000 };
const DIAL: Record<string, string> = { ru: "7", kz: "7", by: "375", ua: "380", uz: "998", am: "374", ge: "995", us: "1", de: "49" };
const MAX_EVENTS = 1000;
const LOGIN = /^[A-Za-z0-9._-]{3,64}$/;
const FIRST = ["Anna", "Boris", "Clara", "Denis", "Elena", "Felix", "Galina", "Igor", "Julia", "Kirill", "Lena", "Mark"];
const LAST = ["Orlova", "Petrov", "Sokolova", "Volkov", "Zaitseva", "Morozov"];

class HttpError extends Error {
  status: number;
  error: string;
  headers: Record<string, string>;
  constructor(status: number, error: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.headers = headers;
  }
}
const bad = (message: string) => new HttpError(400, "invalid", message);
const missing = (what: string, id: string) => new HttpError(404, "not_found", `${what} ${quote(id)} not found`);

type Body = Record<string, unknown>;
/** The request's Idempotency-Key header ("" when absent); 1-255 visible ASCII characters. */
function idempotencyKeyOf(req: http.IncomingMessage): string {
  const v = req.headers["idempotency-key"];
  const key = (Array.isArray(v) ? v[0] : v) ?? "";
  if (key && !/^[\x21-\x7e]{1,255}$/.test(key)) throw bad("Idempotency-Key must be 1-255 visible ASCII characters");
  return key;
}

type Reply = [status: number, body: unknown, headers?: Record<string, string>];

/** Idempotency keys remembered per platform; past this the oldest tenth is forgotten. */
export const IDEMPOTENCY_KEYS_KEPT = 200_000;
type Route = [pattern: string, run: (params: string[], body: Body, req: http.IncomingMessage) => Reply | Promise<Reply>];

/** Matches "POST posts/:/likes" against a method and path segments; returns the ":" parts or null. */
function match(method: string, seg: string[], pattern: string): string[] | null {
  const [m, p] = pattern.split(" ");
  const parts = p.split("/");
  if (m !== method || parts.length !== seg.length) return null;
  const params: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === ":") params.push(seg[i]);
    else if (parts[i] !== seg[i]) return null;
  }
  return params;
}

/** obj[key] when it is obj's own property (ids come from URLs: "constructor" must not resolve). */
const own = <T>(obj: Record<string, T>, key: string): T | undefined => (Object.hasOwn(obj, key) ? obj[key] : undefined);

function str(body: Body, key: string, opts: { required?: boolean; max?: number } = {}): string {
  const v = body[key] ?? "";
  if (typeof v !== "string") throw bad(`${key} must be a string`);
  if (opts.required && !v) throw bad(`${key} is required`);
  if (v.length > (opts.max ?? 256)) throw bad(`${key} is longer than ${opts.max ?? 256} characters`);
  return v;
}

function hashPassword(pw: string): string {
  const salt = randomBytes(8).toString("hex");
  return `${salt}:${createHash("sha256").update(salt + pw).digest("hex")}`;
}
function checkPassword(stored: string, pw: string): boolean {
  const [salt, hash] = stored.split(":");
  if (!salt || !hash) return false;
  return timingSafeEqual(Buffer.from(hash, "hex"), createHash("sha256").update(salt + pw).digest());
}

function checkFaults(f: Faults): Faults {
  const rate = (n: number) => typeof n === "number" && n >= 0 && n <= 1;
  const ms = (n: number) => typeof n === "number" && Number.isFinite(n) && n >= 0;
  if (!ms(f.latency?.minMs) || !ms(f.latency?.maxMs) || f.latency.minMs > f.latency.maxMs) throw bad("latency must be {minMs, maxMs} with 0 <= minMs <= maxMs");
  if (!rate(f.errorRate) || !rate(f.codeLossRate)) throw bad("errorRate and codeLossRate must be between 0 and 1");
  if (!ms(f.codeDelayMs)) throw bad("codeDelayMs must be a non-negative number");
  return { latency: { minMs: f.latency.minMs, maxMs: f.latency.maxMs }, errorRate: f.errorRate, codeDelayMs: f.codeDelayMs, codeLossRate: f.codeLossRate };
}
function checkRateLimit(r: RateLimit): RateLimit {
  if (!(r.burst >= 1) || !(r.perSecond > 0) || !Number.isFinite(r.burst) || !Number.isFinite(r.perSecond)) throw bad("rate limit must be {burst >= 1, perSecond > 0}");
  return { burst: r.burst, perSecond: r.perSecond };
}

/** Creates a sandbox: the world (loaded from dataFile when it exists, else seeded), the HTTP handler and admin helpers. */
export function createSandbox(opts: SandboxOptions = {}) {
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const log = opts.log;
  const sms: SmsSettings = { ...DEFAULT_SMS, ...opts.sms };
  const signupTtlMs = opts.signupTtlMs ?? 15 * 60_000;
  const sessionTtlMs = opts.sessionTtlMs ?? 30 * 86_400_000;
  const saveDelayMs = opts.saveDelayMs ?? 250;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  let faults = checkFaults({ ...DEFAULT_FAULTS, ...opts.faults, latency: { ...DEFAULT_FAULTS.latency, ...opts.faults?.latency } });
  let rateLimit = checkRateLimit({ burst: 20, perSecond: 1, ...opts.rateLimit });
  const buckets = new Map<string, { tokens: number; at: number }>();
  const codeTimers = new Set<NodeJS.Timeout>();
  const streams = new Set<http.ServerResponse>();
  const streamStats = { connects: 0, lastEventIds: [] as string[] };
  let saveTimer: NodeJS.Timeout | undefined;
  let server: http.Server | undefined;
  let closed = false;

  // -------------------------------------------------------------------------------------------
  // World: load or seed, persist

  let world!: SandboxWorld;
  const nextId = (prefix: string) => `${prefix}${++world.seq}`;
  const token = () => randomBytes(24).toString("base64url");

  function seedPlatform(p: Platform): SandboxPlatformState {
    const s: SandboxPlatformState = { users: {}, sessions: {}, signups: {}, posts: {}, groups: {}, stories: {}, messages: [], friendRequests: [], idempotency: {} };
    const t = now();
    const users = FIRST.map((first, i) => {
      const u: SandboxUser = {
        id: nextId("u"), login: `${p}_seed_${i + 1}`, pw: "", phone: "", firstName: first, lastName: LAST[i % LAST.length], fields: {},
        status: "active", reason: "", friends: [], groups: [], profileViews: 0, seeded: true, createdAt: t,
      };
      s.users[u.id] = u;
      for (let j = 1; j <= 2; j++) {
        const post: SandboxPost = { id: nextId("p"), authorId: u.id, text: `${first}'s post #${j} on ${p}`, likes: [], comments: [], reposts: [], repostOf: "", at: t };
        s.posts[post.id] = post;
      }
      if (i % 2 === 0) {
        const story = { id: nextId("s"), authorId: u.id, viewers: [], at: t };
        s.stories[story.id] = story;
      }
      return u;
    });
    for (const name of ["Hiking", "Cooking", "Photography", "Board games"]) {
      const g = { id: nextId("g"), name, members: users.filter((_, i) => i % 3 === 0).map((u) => u.id) };
      for (const id of g.members) s.users[id].groups.push(g.id);
      s.groups[g.id] = g;
    }
    return s;
  }

  function load(): void {
    const loaded = opts.dataFile ? readWorldFile(opts.dataFile) : undefined;
    if (loaded) {
      world = loaded;
      log?.info({ dataFile: opts.dataFile }, "sandbox world loaded");
    } else {
      world = { version: 1, seq: 0, platforms: {} as SandboxWorld["platforms"], sms: { balanceKop: Math.round(sms.startBalance * 100), rentals: {}, eventSeq: 0, events: [] } };
    }
    for (const p of PLATFORMS) {
      world.platforms[p] ??= seedPlatform(p);
      world.platforms[p].idempotency ??= {};
    }
  }
  load();

  function saveNow(): void {
    if (saveTimer) clearTimeout(saveTimer);
    saveTimer = undefined;
    if (!opts.dataFile) return;
    try {
      writeWorldFile(opts.dataFile, world);
    } catch (err) {
      log?.warn({ err: String(err), dataFile: opts.dataFile }, "could not save the sandbox world");
    }
  }
  function changed(): void {
    if (opts.dataFile && !saveTimer && !closed) saveTimer = setTimeout(saveNow, saveDelayMs);
  }

  // -------------------------------------------------------------------------------------------
  // SMS side

  const poolPhones = (service: string, country: string): string[] => {
    const si = (PLATFORMS as readonly string[]).indexOf(service);
    const ci = sms.countries.indexOf(country);
    if (si < 0 || ci < 0) return [];
    const prefix = `+${DIAL[country] ?? "999"}99${si}${ci % 10}`;
    return Array.from({ length: sms.numbersPerPool }, (_, i) => prefix + String(i + 1).padStart(5, "0"));
  };

  /** Ends rentals past their expiry (refunding those that got no code). */
  function sweepRentals(): void {
    const t = now();
    for (const r of Object.values(world.sms.rentals)) {
      if (r.status !== "active" || t < r.expiresAt) continue;
      r.status = "expired";
      if (r.codes === 0) {
        r.refunded = true;
        world.sms.balanceKop += r.priceKop;
      }
      changed();
    }
  }

  function rent(body: Body): Reply {
    sweepRentals();
    const service = str(body, "service", { required: true });
    const country = (str(body, "country") || "ru").toLowerCase();
    const operator = str(body, "operator") || "any";
    if (!isPlatform(service)) throw new HttpError(400, "unknown_service", `service ${quote(service)} is not offered; one of ${PLATFORMS.join(", ")}`);
    const busy = new Set(Object.values(world.sms.rentals).filter((r) => r.status === "active").map((r) => r.phone));
    const phone = poolPhones(service, country).find((p) => !busy.has(p));
    if (!phone) throw new HttpError(409, "no_numbers", `no free number for ${service} in ${country}`);
    const priceKop = Math.round(sms.price * 100);
    if (world.sms.balanceKop < priceKop) {
      throw new HttpError(402, "insufficient_balance", `balance ${(world.sms.balanceKop / 100).toFixed(2)} RUB is below the price ${(priceKop / 100).toFixed(2)} RUB`);
    }
    world.sms.balanceKop -= priceKop;
    const t = now();
    const r: SandboxRental = { ref: `rent_${randomBytes(6).toString("hex")}`, service, country, operator, phone, priceKop, status: "active", codes: 0, refunded: false, createdAt: t, expiresAt: t + sms.rentalTtlMs };
    world.sms.rentals[r.ref] = r;
    changed();
    return [201, { ref: r.ref, phone, price: priceKop / 100, currency: "RUB", expires_at: new Date(r.expiresAt).toISOString() }];
  }

  function rental(ref: string): SandboxRental {
    sweepRentals();
    const r = own(world.sms.rentals, ref);
    if (!r) throw missing("rental", ref);
    return r;
  }

  function cancel(ref: string): Reply {
    const r = rental(ref);
    if (r.status === "active") {
      r.status = "cancelled";
      if (r.codes === 0) {
        r.refunded = true;
        world.sms.balanceKop += r.priceKop;
      }
      changed();
    } else if (r.status === "finished") return [200, { refunded: false, status: r.status }];
    return [200, { refunded: r.refunded, status: r.status }];
  }

  function finish(ref: string): Reply {
    const r = rental(ref);
    if (r.status === "active") {
      r.status = "finished";
      changed();
    }
    return [200, { status: r.status }];
  }

  const frame = (e: SandboxSmsEvent) => `id: ${e.id}\nevent: sms\ndata: ${JSON.stringify({ ref: e.ref, phone: e.phone, text: e.text, code: e.code, at: new Date(e.at).toISOString() })}\n\n`;

  /** Delivers an SMS to the active rental of `phone` for `service`; returns the event, or null when nobody rents that number. */
  function sendSms(service: string, phone: string, text: string): SandboxSmsEvent | null {
    sweepRentals();
    const r = Object.values(world.sms.rentals).find((x) => x.status === "active" && x.phone === phone && x.service === service);
    if (!r) {
      log?.debug({ service, phone }, "sandbox SMS to a number nobody rents; dropped");
      return null;
    }
    r.codes++;
    const e: SandboxSmsEvent = { id: ++world.sms.eventSeq, ref: r.ref, phone, text, code: /\b\d{4,8}\b/.exec(text)?.[0] ?? "", at: now() };
    world.sms.events.push(e);
    if (world.sms.events.length > MAX_EVENTS) world.sms.events.splice(0, world.sms.events.length - MAX_EVENTS);
    for (const res of streams) if (!res.destroyed) res.write(frame(e));
    changed();
    return e;
  }

  function openStream(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const lastHeader = req.headers["last-event-id"];
    const last = typeof lastHeader === "string" ? lastHeader : url.searchParams.get("last_event_id");
    streamStats.connects++;
    if (last !== null) streamStats.lastEventIds = [...streamStats.lastEventIds, last].slice(-100);
    res.write(": connected\n\n");
    if (last !== null && /^\d+$/.test(last)) for (const e of world.sms.events) if (e.id > Number(last)) res.write(frame(e));
    streams.add(res);
    const hb = setInterval(() => res.write(": ping\n\n"), heartbeatMs);
    res.on("close", () => {
      clearInterval(hb);
      streams.delete(res);
    });
  }

  const smsRoutes: Route[] = [
    ["POST rentals", (_, b) => rent(b)],
    ["GET rentals/:", ([ref]) => [200, rental(ref)]],
    ["POST rentals/:/cancel", ([ref]) => cancel(ref)],
    ["POST rentals/:/finish", ([ref]) => finish(ref)],
    ["GET balance", () => (sweepRentals(), [200, { balance: world.sms.balanceKop / 100, currency: "RUB" }])],
    ["POST admin/top-up", (_, b) => [200, { balance: topUp(Number(b.amount)), currency: "RUB" }]],
  ];

  function topUp(amount: number): number {
    if (!Number.isFinite(amount) || amount <= 0) throw bad("amount must be a positive number of RUB");
    world.sms.balanceKop += Math.round(amount * 100);
    changed();
    return world.sms.balanceKop / 100;
  }

  // -------------------------------------------------------------------------------------------
  // Platform side

  function scheduleCode(p: Platform, signupId: string, delayMs: number): void {
    const timer = setTimeout(() => {
      codeTimers.delete(timer);
      const s = world.platforms[p].signups[signupId];
      if (!s || s.done || s.deliverAt === null) return;
      s.deliverAt = null;
      s.sentAt = now();
      sendSms(p, s.phone, `Sandbox ${p}: your confirmation code is ${s.code}. Do not share it.`);
      changed();
    }, Math.max(0, delayMs));
    codeTimers.add(timer);
  }
  // Codes still due from before a restart go out when they would have.
  for (const p of PLATFORMS) for (const s of Object.values(world.platforms[p].signups)) if (!s.done && s.deliverAt !== null) scheduleCode(p, s.id, s.deliverAt - now());

  // Users by lower-cased login, per platform: login and sign-up look up instead of scanning.
  const byLogin = new Map(PLATFORMS.map((p) => [p, new Map(Object.values(world.platforms[p].users).map((u) => [u.login.toLowerCase(), u.id]))]));
  function addToWorld(p: Platform, u: SandboxUser): void {
    world.platforms[p].users[u.id] = u;
    byLogin.get(p)!.set(u.login.toLowerCase(), u.id);
  }
  const loginTaken = (p: Platform, login: string) => byLogin.get(p)!.has(login.toLowerCase());

  /** A new account's login and password from a body: checked, and the login not taken. */
  function newLogin(p: Platform, b: Body): { login: string; password: string } {
    const login = str(b, "login", { required: true, max: 64 });
    const password = str(b, "password", { required: true });
    if (!LOGIN.test(login)) throw bad("login must be 3-64 letters, digits, . _ or -");
    if (password.length < 6) throw bad("password must be at least 6 characters");
    if (loginTaken(p, login)) throw new HttpError(409, "login_taken", `login ${quote(login)} is taken`);
    return { login, password };
  }

  function newSession(p: Platform, userId: string): Reply {
    const t = token();
    world.platforms[p].sessions[t] = { userId, expiresAt: now() + sessionTtlMs };
    changed();
    return [200, { user_id: userId, session_token: t }];
  }

  function signUp(p: Platform, b: Body): Reply {
    const { login, password } = newLogin(p, b);
    const phone = str(b, "phone", { required: true, max: 20 });
    if (!/^\+?\d{7,15}$/.test(phone)) throw bad("phone must be 7-15 digits with an optional +");
    const fields = (b.fields ?? {}) as Record<string, unknown>;
    if (typeof fields !== "object" || Array.isArray(fields) || Object.values(fields).some((v) => typeof v !== "string")) throw bad("fields must map names to strings");
    if (p === "vk" && fields.birth_date && !/^\d{4}-\d{2}-\d{2}$/.test(fields.birth_date as string)) throw bad("fields.birth_date must be YYYY-MM-DD");
    if (p === "vk" && fields.gender && !["male", "female"].includes(fields.gender as string)) throw bad("fields.gender must be male or female");
    const id = `su_${randomBytes(8).toString("hex")}`;
    const code = String(Math.floor(random() * 1_000_000)).padStart(6, "0");
    const lost = random() < faults.codeLossRate;
    world.platforms[p].signups[id] = {
      id, login, pw: hashPassword(password), phone, firstName: str(b, "first_name"), lastName: str(b, "last_name"), fields: fields as Record<string, string>,
      code, expiresAt: now() + signupTtlMs, attempts: 0, deliverAt: lost ? null : now() + faults.codeDelayMs, sentAt: null, done: false,
    };
    if (!lost) scheduleCode(p, id, faults.codeDelayMs);
    changed();
    return [201, { signup_id: id, expires_at: new Date(now() + signupTtlMs).toISOString() }];
  }

  function confirm(p: Platform, id: string, b: Body): Reply {
    const s = own(world.platforms[p].signups, id);
    if (!s) throw missing("sign-up", id);
    if (s.done) throw new HttpError(409, "already_confirmed", `sign-up ${id} is already confirmed`);
    if (now() > s.expiresAt) throw new HttpError(410, "expired", `sign-up ${id} expired`);
    if (s.attempts >= 5) throw new HttpError(410, "expired", `sign-up ${id} had too many wrong codes`);
    if (str(b, "code", { required: true }) !== s.code) {
      s.attempts++;
      changed();
      throw new HttpError(400, "wrong_code", "the confirmation code is wrong");
    }
    if (loginTaken(p, s.login)) throw new HttpError(409, "login_taken", `login ${quote(s.login)} is taken`);
    s.done = true;
    const u: SandboxUser = {
      id: nextId("u"), login: s.login, pw: s.pw, phone: s.phone, firstName: s.firstName, lastName: s.lastName, fields: s.fields,
      status: "active", reason: "", friends: [], groups: [], profileViews: 0, seeded: false, createdAt: now(),
    };
    addToWorld(p, u);
    return newSession(p, u.id);
  }

  /** An active user with a password and no phone, made by the admin (accounts that exist outside Conveer). */
  function addUser(p: Platform, b: Body): { user_id: string; login: string } {
    const { login, password } = newLogin(p, b);
    const u: SandboxUser = {
      id: nextId("u"), login, pw: hashPassword(password), phone: "", firstName: str(b, "first_name"), lastName: str(b, "last_name"), fields: {},
      status: "active", reason: "", friends: [], groups: [], profileViews: 0, seeded: false, createdAt: now(),
    };
    addToWorld(p, u);
    changed();
    return { user_id: u.id, login };
  }

  function login(p: Platform, b: Body): Reply {
    const name = str(b, "login", { required: true }).toLowerCase();
    const pw = str(b, "password", { required: true });
    const id = byLogin.get(p)!.get(name);
    const u = id === undefined ? undefined : world.platforms[p].users[id];
    if (!u || !u.pw || !checkPassword(u.pw, pw)) throw new HttpError(401, "unauthorized", "wrong login or password");
    return newSession(p, u.id);
  }

  function authed(p: Platform, req: http.IncomingMessage): SandboxUser {
    const t = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const s = own(world.platforms[p].sessions, t);
    if (!s || now() > s.expiresAt) throw new HttpError(401, "unauthorized", "the session is missing or expired; log in again");
    return world.platforms[p].users[s.userId];
  }

  /** Takes one token from the user's bucket; returns 0, or the ms until one is available. */
  function take(key: string): number {
    const t = now();
    const b = buckets.get(key) ?? { tokens: rateLimit.burst, at: t };
    b.tokens = Math.min(rateLimit.burst, b.tokens + (Math.max(0, t - b.at) / 1000) * rateLimit.perSecond);
    b.at = t;
    buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / rateLimit.perSecond) * 1000);
  }

  /**
   * Wraps one of the eight actions: session, standing, idempotency key, rate limit; the state
   * changes are saved. A key seen before answers what it answered then (not rate limited, not run).
   */
  const action = (p: Platform, run: (u: SandboxUser, s: SandboxPlatformState, params: string[], b: Body) => Reply) =>
    (params: string[], b: Body, req: http.IncomingMessage): Reply => {
      const u = authed(p, req);
      if (u.status !== "active") throw new HttpError(403, u.status, u.reason || `the account is ${u.status}`);
      const s = world.platforms[p];
      const key = idempotencyKeyOf(req);
      const seen = key ? own(s.idempotency, key) : undefined;
      if (seen) {
        if (seen.userId !== u.id) throw new HttpError(422, "invalid", `Idempotency-Key ${quote(key)} was used by another account; use a new key`);
        seen.replays++;
        changed();
        return [seen.status, seen.body, { "idempotent-replayed": "true" }];
      }
      const wait = take(`${p}/${u.id}`);
      if (wait > 0) throw new HttpError(429, "rate_limited", `too many actions; retry in ${wait} ms`, { "retry-after": String(Math.max(1, Math.ceil(wait / 1000))) });
      const out = run(u, s, params, b);
      if (key) remember(s, key, { userId: u.id, status: out[0], body: out[1], at: now(), replays: 0 });
      changed();
      return out;
    };

  function remember(s: SandboxPlatformState, key: string, answer: SandboxPlatformState["idempotency"][string]): void {
    s.idempotency[key] = answer;
    const keys = Object.keys(s.idempotency);
    if (keys.length > IDEMPOTENCY_KEYS_KEPT) for (const k of keys.slice(0, Math.ceil(IDEMPOTENCY_KEYS_KEPT / 10))) delete s.idempotency[k];
  }

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

  function setStatus(p: Platform, id: string, status: SandboxUserStatus, reason: string): SandboxUser {
    const u = own(world.platforms[p].users, id);
    if (!u) throw missing("user", id);
    u.status = status;
    u.reason = status === "active" ? "" : reason || status;
    changed();
    return u;
  }

  function platformRoutes(p: Platform): Route[] {
    return [
      ["POST signups", (_, b) => signUp(p, b)],
      ["POST signups/:/confirm", ([id], b) => confirm(p, id, b)],
      ["POST sessions", (_, b) => login(p, b)],
      ["GET me", (_, __, req) => {
        const u = authed(p, req);
        return [200, { user_id: u.id, login: u.login, status: u.status, reason: u.reason }];
      }],
      ["GET feed", (_, __, req) => {
        const u = authed(p, req);
        const s = world.platforms[p];
        return [200, {
          users: Object.values(s.users).filter((x) => x.id !== u.id && x.status === "active").map((x) => x.id),
          posts: Object.values(s.posts).filter((x) => x.authorId !== u.id).slice(-100).map((x) => x.id),
          groups: Object.keys(s.groups),
        }];
      }],
      ["GET users/:", action(p, (_, s, [id]) => {
        const t = userOf(s, id);
        t.profileViews++;
        const posts = Object.values(s.posts).filter((x) => x.authorId === id).length;
        return [200, { user_id: t.id, name: `${t.firstName} ${t.lastName}`.trim(), friends: t.friends.length, posts, views: t.profileViews }];
      })],
      ["GET users/:/stories", action(p, (u, s, [id]) => {
        userOf(s, id);
        const stories = Object.values(s.stories).filter((x) => x.authorId === id);
        const viewed = stories.filter((x) => addOnce(x.viewers, u.id)).length;
        return [200, { user_id: id, stories: stories.length, viewed }];
      })],
      ["POST posts/:/likes", action(p, (u, s, [id]) => {
        const post = postOf(s, id);
        const added = addOnce(post.likes, u.id);
        return [added ? 201 : 200, { post_id: id, likes: post.likes.length, already: !added }];
      })],
      ["POST posts/:/comments", action(p, (u, s, [id], b) => {
        const post = postOf(s, id);
        const c = { id: nextId("c"), authorId: u.id, text: str(b, "text", { required: true, max: 2000 }), at: now() };
        post.comments.push(c);
        return [201, { post_id: id, comment_id: c.id, comments: post.comments.length }];
      })],
      ["POST posts/:/reposts", action(p, (u, s, [id], b) => {
        const orig = postOf(s, id);
        const post: SandboxPost = { id: nextId("p"), authorId: u.id, text: str(b, "text", { max: 2000 }), likes: [], comments: [], reposts: [], repostOf: id, at: now() };
        s.posts[post.id] = post;
        orig.reposts.push(post.id);
        return [201, { post_id: id, repost_id: post.id, reposts: orig.reposts.length }];
      })],
      ["POST groups/:/members", action(p, (u, s, [id]) => {
        const g = own(s.groups, id);
        if (!g) throw missing("group", id);
        const added = addOnce(g.members, u.id);
        addOnce(u.groups, id);
        return [added ? 201 : 200, { group_id: id, members: g.members.length, already: !added }];
      })],
      ["POST users/:/messages", action(p, (u, s, [id], b) => {
        notSelf(u, userOf(s, id), "message");
        const m = { id: nextId("m"), from: u.id, to: id, text: str(b, "text", { required: true, max: 4000 }), at: now() };
        s.messages.push(m);
        return [201, { user_id: id, message_id: m.id }];
      })],
      ["POST users/:/friend-requests", action(p, (u, s, [id]) => {
        const t = userOf(s, id);
        notSelf(u, t, "befriend");
        if (u.friends.includes(id)) return [200, { user_id: id, status: "friends" }];
        const mine = s.friendRequests.find((r) => r.from === u.id && r.to === id && r.status === "pending");
        if (mine) return [200, { user_id: id, request_id: mine.id, status: "pending" }];
        const theirs = s.friendRequests.find((r) => r.from === id && r.to === u.id && r.status === "pending");
        if (theirs) {
          theirs.status = "accepted";
          u.friends.push(id);
          t.friends.push(u.id);
          return [200, { user_id: id, request_id: theirs.id, status: "friends" }];
        }
        const r = { id: nextId("f"), from: u.id, to: id, status: "pending" as const, at: now() };
        s.friendRequests.push(r);
        return [201, { user_id: id, request_id: r.id, status: "pending" }];
      })],
      ["POST admin/users", (_, b) => [201, addUser(p, b)]],
      ["POST admin/users/:/ban", ([id], b) => [200, view(setStatus(p, id, "banned", str(b, "reason")))]],
      ["POST admin/users/:/suspend", ([id], b) => [200, view(setStatus(p, id, "suspended", str(b, "reason")))]],
      ["POST admin/users/:/reinstate", ([id]) => [200, view(setStatus(p, id, "active", ""))]],
    ];
  }
  const view = (u: SandboxUser) => ({ user_id: u.id, status: u.status, reason: u.reason });
  const routesByPlatform = Object.fromEntries(PLATFORMS.map((p) => [p, platformRoutes(p)])) as Record<Platform, Route[]>;

  const adminRoutes: Route[] = [
    ["GET faults", () => [200, faults]],
    ["POST faults", (_, b) => [200, setFaults(b as Partial<Faults>)]],
    ["GET rate-limit", () => [200, rateLimit]],
    ["POST rate-limit", (_, b) => [200, setRateLimit(b as Partial<RateLimit>)]],
  ];

  function setFaults(f: Partial<Faults>): Faults {
    faults = checkFaults({ ...faults, ...f, latency: { ...faults.latency, ...f.latency } });
    return faults;
  }
  function setRateLimit(r: Partial<RateLimit>): RateLimit {
    rateLimit = checkRateLimit({ ...rateLimit, ...r });
    buckets.clear();
    return rateLimit;
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  function readJson(req: http.IncomingMessage): Promise<Body> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > 64 * 1024) reject(new HttpError(413, "invalid", "body over 64 KiB"));
        else chunks.push(c);
      });
      req.on("error", reject);
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8").trim();
        if (!text) return resolve({});
        try {
          const v: unknown = JSON.parse(text);
          if (v && typeof v === "object" && !Array.isArray(v)) resolve(v as Body);
          else reject(bad("the body must be a JSON object"));
        } catch {
          reject(bad("the body is not valid JSON"));
        }
      });
    });
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body) + "\n");
  }

  async function dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sandbox");
    const seg = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? "GET";
    if (seg[0] !== "v1") throw missing("route", url.pathname);
    if (seg[1] === "admin" || seg[1] === "sms" || (isPlatform(seg[1]) && seg[2] === "admin")) await checkAccess(req);
    if (method === "GET" && seg[1] === "sms" && seg[2] === "events" && seg.length === 3) return openStream(req, res, url);
    const body = method === "POST" ? await readJson(req) : {};
    let routes: Route[];
    const rest = seg.slice(2);
    if (seg[1] === "admin") routes = adminRoutes;
    else if (seg[1] === "sms") routes = smsRoutes;
    else if (isPlatform(seg[1])) {
      routes = routesByPlatform[seg[1]];
      if (rest[0] !== "admin") {
        const { minMs, maxMs } = faults.latency;
        const delay = minMs + random() * (maxMs - minMs);
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        if (random() < faults.errorRate) throw new HttpError(503, "unavailable", "the sandbox platform failed (injected fault)");
      }
    } else throw missing("route", url.pathname);
    for (const [pattern, run] of routes) {
      const params = match(method, rest, pattern);
      if (!params) continue;
      const [status, out, headers] = await run(params, body, req);
      return sendJson(res, status, out, headers);
    }
    throw missing("route", `${method} ${url.pathname}`);
  }

  /** Refuses an admin or SMS request without the access token (when one is set and required now). */
  async function checkAccess(req: http.IncomingMessage): Promise<void> {
    const access = opts.access;
    if (!access?.token || (access.required && !(await access.required()))) return;
    const sent = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization?.trim() ?? "")?.[1] ?? "";
    const a = createHash("sha256").update(sent).digest();
    const b = createHash("sha256").update(access.token).digest();
    if (!sent || !timingSafeEqual(a, b)) {
      throw new HttpError(401, "unauthorized", "this sandbox endpoint (admin or SMS) needs the header \"authorization: Bearer <CONVEER_SANDBOX_TOKEN>\"", { "www-authenticate": "Bearer" });
    }
  }

  /** The sandbox's request handler (mountable on any node:http server). */
  function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
    dispatch(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return sendJson(res, err.status, { error: err.error, message: err.message }, err.headers);
      log?.error({ err: String(err), url: req.url }, "sandbox handler failed");
      sendJson(res, 500, { error: "internal", message: "internal error" });
    });
  }

  return {
    handler,
    /** Listens on "host:port" (port 0: any free one). */
    listen(addr: string): Promise<{ url: string; port: number }> {
      const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(addr);
      if (!m) return Promise.reject(new Error(`sandbox address ${JSON.stringify(addr)} is not host:port`));
      const host = m[1].replace(/^\[|\]$/g, "") || "127.0.0.1";
      if (!opts.access?.token && !isLoopback(host)) {
        return Promise.reject(
          new Error(`refusing to listen on ${addr}: without CONVEER_SANDBOX_TOKEN the sandbox's admin and SMS endpoints answer anyone, so it listens on loopback only. Set CONVEER_SANDBOX_TOKEN (e.g. \`openssl rand -hex 24\`), or listen on 127.0.0.1`),
        );
      }
      const srv = (server = http.createServer(handler));
      return new Promise((resolve, reject) => {
        srv.once("error", (err) => reject(new Error(`the sandbox cannot listen on ${addr}: ${err.message}`)));
        srv.listen(Number(m[2]), host, () => {
          const port = (srv.address() as AddressInfo).port;
          const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
          log?.info({ port }, "sandbox listening");
          resolve({ url: `http://${shown}:${port}`, port });
        });
      });
    },
    /** Stops listening, ends event streams, cancels pending code timers (persisted ones resume on reload) and saves. */
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const t of codeTimers) clearTimeout(t);
      codeTimers.clear();
      for (const res of streams) res.end();
      saveNow();
      const srv = server;
      if (srv) {
        await new Promise<void>((resolve) => {
          srv.close(() => resolve());
          srv.closeAllConnections();
        });
      }
    },
    /** Bans a user: actions answer 403 {error: "banned", reason}. */
    ban: (p: Platform, userId: string, reason: string) => view(setStatus(p, userId, "banned", reason)),
    /** Suspends a user: actions answer 403 {error: "suspended", reason}. */
    suspend: (p: Platform, userId: string, reason: string) => view(setStatus(p, userId, "suspended", reason)),
    /** Makes a user active again. */
    reinstate: (p: Platform, userId: string) => view(setStatus(p, userId, "active", "")),
    /** Adds an active user who can log in, as if they had signed up outside Conveer (imported accounts); answers its id. */
    addUser(p: Platform, login: string, password: string): string {
      return addUser(p, { login, password }).user_id;
    },
    /** Ends a user's sessions (the next call answers 401). */
    revokeSessions(p: Platform, userId: string): void {
      const sessions = world.platforms[p].sessions;
      for (const [t, s] of Object.entries(sessions)) if (s.userId === userId) delete sessions[t];
      changed();
    },
    /** Changes fault injection at runtime (merged into the current settings). */
    setFaults,
    /** The current fault settings. */
    faults: (): Faults => structuredClone(faults),
    /** Changes the per-account rate limit (and refills every bucket). */
    setRateLimit,
    /** Adds RUB to the SMS balance; returns the new balance. */
    topUp,
    /** Sends an SMS to a rented number, as the platform does with codes; null when nobody rents it. */
    sendSms,
    /** Drops every SSE connection abruptly (subscribers must reconnect). */
    dropEventStreams(): void {
      for (const res of streams) {
        streams.delete(res);
        res.destroy();
      }
    },
    /** SSE statistics: open streams, connections so far, Last-Event-ID values reconnecting clients sent. */
    streamStats: () => ({ open: streams.size, connects: streamStats.connects, lastEventIds: [...streamStats.lastEventIds] }),
    /** A deep copy of the world, for tests and inspection. */
    state: (): SandboxWorld => structuredClone(world),
    /** Writes the world to dataFile now (normally debounced). */
    save: saveNow,
  };
}
