/**
 * The sandbox's persisted world: its types, its seed, and the file it lives in (DATA_DIR/sandbox.json).
 * A file that is cut short or has the wrong shape is refused with a message naming the file, the
 * damage and the fix; saves are atomic (temp file, fsync, rename, fsync of the directory), so a
 * crash mid-save leaves the previous world whole; changes are saved debounced (`changed`).
 */
import fs from "node:fs";
import path from "node:path";
import { PLATFORMS } from "../domain.ts";
import type { Platform } from "../domain.ts";
import type { SandboxContext } from "./sandbox-context.ts";

/** A sandbox account's standing. */
export type SandboxUserStatus = "active" | "banned" | "suspended";
/** A user of the simulated platform (seeded users have no password and cannot log in). */
export type SandboxUser = {
  id: string; login: string; pw: string; phone: string; firstName: string; lastName: string; fields: Record<string, string>;
  status: SandboxUserStatus; reason: string; friends: string[]; groups: string[]; profileViews: number; seeded: boolean; createdAt: number;
};
/** A post (a repost has repostOf set). */
export type SandboxPost = { id: string; authorId: string; text: string; likes: string[]; comments: { id: string; authorId: string; text: string; at: number }[]; reposts: string[]; repostOf: string; at: number };
/** One namespace's state. */
export type SandboxPlatformState = {
  users: Record<string, SandboxUser>;
  sessions: Record<string, { userId: string; expiresAt: number }>;
  signups: Record<string, { id: string; login: string; pw: string; phone: string; firstName: string; lastName: string; fields: Record<string, string>; code: string; expiresAt: number; attempts: number; deliverAt: number | null; sentAt: number | null; done: boolean }>;
  posts: Record<string, SandboxPost>;
  groups: Record<string, { id: string; name: string; members: string[] }>;
  stories: Record<string, { id: string; authorId: string; viewers: string[]; at: number }>;
  messages: { id: string; from: string; to: string; text: string; at: number }[];
  friendRequests: { id: string; from: string; to: string; status: "pending" | "accepted"; at: number }[];
  /**
   * Answers of actions sent with an Idempotency-Key header, by key: a repeat of the key gets the
   * stored answer (header Idempotent-Replayed: true) instead of running again. `replays` counts the
   * repeats. The oldest are forgotten past IDEMPOTENCY_KEYS_KEPT per platform.
   */
  idempotency: Record<string, { userId: string; status: number; body: unknown; at: number; replays: number }>;
};
/** A number rental on the SMS side; prices in kopecks. */
export type SandboxRental = { ref: string; service: string; country: string; operator: string; phone: string; priceKop: number; status: "active" | "finished" | "cancelled" | "expired"; codes: number; refunded: boolean; createdAt: number; expiresAt: number };
/** A delivered SMS as kept for the event stream. */
export type SandboxSmsEvent = { id: number; ref: string; phone: string; text: string; code: string; at: number };
/** The whole persisted world. */
export type SandboxWorld = { version: 1; seq: number; platforms: Record<Platform, SandboxPlatformState>; sms: { balanceKop: number; rentals: Record<string, SandboxRental>; eventSeq: number; events: SandboxSmsEvent[] } };

// A small shape language for the checks: a primitive name, a string enum, an object's fields (a
// key ending in "?" may be absent), a record or array of one shape, or a nullable shape.
type Shape =
  | "string" | "number" | "boolean" | "any"
  | { enum: readonly (string | number)[] }
  | { fields: Record<string, Shape> }
  | { record: Shape }
  | { array: Shape }
  | { nullable: Shape };

const S = "string", N = "number", B = "boolean";
const strings: Shape = { array: S };
const USER: Shape = { fields: {
  id: S, login: S, pw: S, phone: S, firstName: S, lastName: S, fields: { record: S }, status: { enum: ["active", "banned", "suspended"] },
  reason: S, friends: strings, groups: strings, profileViews: N, seeded: B, createdAt: N,
} };
const PLATFORM: Shape = { fields: {
  users: { record: USER },
  sessions: { record: { fields: { userId: S, expiresAt: N } } },
  signups: { record: { fields: {
    id: S, login: S, pw: S, phone: S, firstName: S, lastName: S, fields: { record: S }, code: S, expiresAt: N, attempts: N,
    deliverAt: { nullable: N }, sentAt: { nullable: N }, done: B,
  } } },
  posts: { record: { fields: {
    id: S, authorId: S, text: S, likes: strings, comments: { array: { fields: { id: S, authorId: S, text: S, at: N } } }, reposts: strings, repostOf: S, at: N,
  } } },
  groups: { record: { fields: { id: S, name: S, members: strings } } },
  stories: { record: { fields: { id: S, authorId: S, viewers: strings, at: N } } },
  messages: { array: { fields: { id: S, from: S, to: S, text: S, at: N } } },
  friendRequests: { array: { fields: { id: S, from: S, to: S, status: { enum: ["pending", "accepted"] }, at: N } } },
  // Files written before idempotency keys existed have none; the sandbox adds an empty record.
  "idempotency?": { record: { fields: { userId: S, status: N, body: "any", at: N, replays: N } } },
} };
// Platforms missing from the file are seeded afresh (a file written before a platform existed).
const WORLD: Shape = { fields: {
  version: { enum: [1] }, seq: N,
  platforms: { fields: { "vk?": PLATFORM, "telegram?": PLATFORM, "mail?": PLATFORM, "max?": PLATFORM } },
  sms: { fields: {
    balanceKop: N, eventSeq: N,
    rentals: { record: { fields: {
      ref: S, service: S, country: S, operator: S, phone: S, priceKop: N, status: { enum: ["active", "finished", "cancelled", "expired"] },
      codes: N, refunded: B, createdAt: N, expiresAt: N,
    } } },
    events: { array: { fields: { id: N, ref: S, phone: S, text: S, code: S, at: N } } },
  } },
} };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const describe = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "string" ? `the string ${JSON.stringify(v.slice(0, 40))}` : typeof v === "number" ? String(v) : typeof v);
const at = (where: string, key: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? (where ? `${where}.${key}` : key) : `${where}[${JSON.stringify(key.slice(0, 40))}]`);

/** The first place where `v` does not have `shape`, as "path: what is wrong", or "". */
function mismatch(v: unknown, shape: Shape, where: string): string {
  if (shape === "any") return "";
  if (typeof shape === "string") {
    const ok = shape === "number" ? typeof v === "number" && Number.isFinite(v) : typeof v === shape;
    return ok ? "" : `${where} must be a ${shape}, not ${describe(v)}`;
  }
  if ("enum" in shape) {
    return shape.enum.includes(v as string | number) ? "" : `${where} must be ${shape.enum.length > 1 ? "one of " : ""}${shape.enum.join(", ")}, not ${describe(v)}`;
  }
  if ("nullable" in shape) return v === null ? "" : mismatch(v, shape.nullable, where);
  if ("array" in shape) {
    if (!Array.isArray(v)) return `${where} must be an array, not ${describe(v)}`;
    for (let i = 0; i < v.length; i++) {
      const m = mismatch(v[i], shape.array, `${where}[${i}]`);
      if (m) return m;
    }
    return "";
  }
  if (!isObject(v)) return `${where || "the world"} must be an object, not ${describe(v)}`;
  if ("record" in shape) {
    for (const [k, item] of Object.entries(v)) {
      const m = mismatch(item, shape.record, at(where, k));
      if (m) return m;
    }
    return "";
  }
  for (const [name, field] of Object.entries(shape.fields)) {
    const optional = name.endsWith("?");
    const key = optional ? name.slice(0, -1) : name;
    if (!Object.hasOwn(v, key)) {
      if (optional) continue;
      return `${at(where, key)} is missing`;
    }
    const m = mismatch(v[key], field, at(where, key));
    if (m) return m;
  }
  return "";
}

/** What to do about a damaged world file, for every refusal. */
function fix(file: string): string {
  return (
    `Restore ${file} from a backup, or move it aside (mv ${file} ${file}.damaged) to start with a fresh sandbox world ` +
    "(accounts registered on the old world then no longer exist on the sandbox platform)"
  );
}

/**
 * Reads and checks the world in `file`; undefined when there is no file. Throws an Error naming the
 * file, what is wrong with it and the fix when it is not a whole version 1 sandbox world.
 */
export function readWorldFile(file: string): SandboxWorld | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read the sandbox world file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!text.trim()) throw new Error(`the sandbox world file ${file} is empty (${text.length} bytes). ${fix(file)}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`the sandbox world file ${file} is not valid JSON (${(err as Error).message}; ${text.length} bytes): it was probably cut short. ${fix(file)}`, { cause: err });
  }
  const wrong = mismatch(value, WORLD, "");
  if (wrong) throw new Error(`the sandbox world file ${file} is not a sandbox world: ${wrong}. ${fix(file)}`);
  return value as SandboxWorld;
}

/**
 * Writes the world to `file` atomically and durably: a temp file beside it is written and fsynced,
 * renamed over `file`, and the directory is fsynced, so a crash leaves either the old or the new world.
 */
export function writeWorldFile(file: string, world: SandboxWorld): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      fs.writeFileSync(fd, JSON.stringify(world));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  const d = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}

const FIRST = ["Anna", "Boris", "Clara", "Denis", "Elena", "Felix", "Galina", "Igor", "Julia", "Kirill", "Lena", "Mark"];
const LAST = ["Orlova", "Petrov", "Sokolova", "Volkov", "Zaitseva", "Morozov"];

/** The next id with `prefix` ("u13", "p14"): one sequence over the whole world, persisted with it. */
export const nextId = (world: SandboxWorld, prefix: string): string => `${prefix}${++world.seq}`;

/** A fresh namespace: twelve seeded users (who cannot log in) with two posts each, stories and four groups. */
export function seedPlatform(world: SandboxWorld, p: Platform, t: number): SandboxPlatformState {
  const s: SandboxPlatformState = { users: {}, sessions: {}, signups: {}, posts: {}, groups: {}, stories: {}, messages: [], friendRequests: [], idempotency: {} };
  const users = FIRST.map((first, i) => {
    const u: SandboxUser = {
      id: nextId(world, "u"), login: `${p}_seed_${i + 1}`, pw: "", phone: "", firstName: first, lastName: LAST[i % LAST.length], fields: {},
      status: "active", reason: "", friends: [], groups: [], profileViews: 0, seeded: true, createdAt: t,
    };
    s.users[u.id] = u;
    for (let j = 1; j <= 2; j++) {
      const post: SandboxPost = { id: nextId(world, "p"), authorId: u.id, text: `${first}'s post #${j} on ${p}`, likes: [], comments: [], reposts: [], repostOf: "", at: t };
      s.posts[post.id] = post;
    }
    if (i % 2 === 0) {
      const story = { id: nextId(world, "s"), authorId: u.id, viewers: [], at: t };
      s.stories[story.id] = story;
    }
    return u;
  });
  for (const name of ["Hiking", "Cooking", "Photography", "Board games"]) {
    const g = { id: nextId(world, "g"), name, members: users.filter((_, i) => i % 3 === 0).map((u) => u.id) };
    for (const id of g.members) s.users[id].groups.push(g.id);
    s.groups[g.id] = g;
  }
  return s;
}

/**
 * The world in `dataFile` (see readWorldFile), or a new one holding `balanceKop`; platforms the
 * file lacks are seeded, and files from before idempotency keys get an empty record.
 */
export function openWorld(dataFile: string | undefined, balanceKop: number, now: () => number): { world: SandboxWorld; loaded: boolean } {
  const loaded = dataFile ? readWorldFile(dataFile) : undefined;
  const world: SandboxWorld = loaded ?? { version: 1, seq: 0, platforms: {} as SandboxWorld["platforms"], sms: { balanceKop, rentals: {}, eventSeq: 0, events: [] } };
  for (const p of PLATFORMS) {
    world.platforms[p] ??= seedPlatform(world, p, now());
    world.platforms[p].idempotency ??= {};
  }
  return { world, loaded: loaded !== undefined };
}

/**
 * Notes that the world changed: saves it after saveDelayMs, or 20 × the last save's duration when
 * that is longer (one save for a burst of changes; a big world is not rewritten more than 5 % of
 * the time). Closing the sandbox saves at once.
 */
export function changed(ctx: SandboxContext): void {
  if (ctx.dataFile && !ctx.saveTimer && !ctx.closed) ctx.saveTimer = setTimeout(saveNow, Math.max(ctx.saveDelayMs, 20 * ctx.lastSaveMs), ctx);
}

/** Writes the world to dataFile now (a failure is logged: the next change tries again). */
export function saveNow(ctx: SandboxContext): void {
  if (ctx.saveTimer) clearTimeout(ctx.saveTimer);
  ctx.saveTimer = undefined;
  if (!ctx.dataFile) return;
  const t0 = performance.now();
  try {
    writeWorldFile(ctx.dataFile, ctx.world);
    ctx.lastSaveMs = performance.now() - t0;
  } catch (err) {
    ctx.log?.warn({ err: String(err), dataFile: ctx.dataFile }, "could not save the sandbox world");
  }
}
