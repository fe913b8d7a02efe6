/**
 * The sandbox's context: its options resolved once, the world, and the mutable state the rules
 * and guards share (fault settings, rate buckets, code timers, SMS listeners, the pending save).
 * Every sandbox module's functions take it first; createSandbox builds one per sandbox.
 */
import type { Logger } from "pino";
import { PLATFORMS } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { DEFAULT_FAULTS, checkFaults, checkRateLimit } from "./guards.ts";
import type { Faults, RateLimit } from "./guards.ts";
import type { SandboxAccess, SandboxOptions } from "./sandbox.ts";
import { DEFAULT_SMS } from "./sms-side.ts";
import type { SmsSettings } from "./sms-side.ts";
import { openWorld } from "./sandbox-world.ts";
import type { SandboxRental, SandboxSmsEvent, SandboxWorld } from "./sandbox-world.ts";

/** One sandbox's options (resolved) and shared state. */
export type SandboxContext = {
  world: SandboxWorld;
  now: () => number;
  random: () => number;
  log: Logger | undefined;
  dataFile: string | undefined;
  access: SandboxAccess | undefined;
  sms: SmsSettings;
  signupTtlMs: number;
  sessionTtlMs: number;
  saveDelayMs: number;
  heartbeatMs: number;
  faults: Faults;
  rateLimit: RateLimit;
  /** Rate buckets by "platform/userId". */
  buckets: Map<string, { tokens: number; at: number }>;
  /** Users' ids by lower-cased login, per platform: login and sign-up look up instead of scanning. */
  byLogin: Map<Platform, Map<string, string>>;
  /**
   * The active rentals by phone (a number is in one pool and rented once at a time): renting,
   * delivering and sweeping look at these instead of every rental the world ever had.
   */
  activeRentals: Map<string, SandboxRental>;
  /** Sign-up codes waiting for their delivery time. */
  codeTimers: Set<NodeJS.Timeout>;
  /** Called with each delivered SMS (the event streams). */
  smsListeners: Set<(e: SandboxSmsEvent) => void>;
  saveTimer: NodeJS.Timeout | undefined;
  /** How long the last save of the world took (ms): saves are spaced 20 times that at least. */
  lastSaveMs: number;
  /** The W3C traceparent headers requests carried, newest last (at most TRACEPARENTS_KEPT): GET /v1/admin/traceparents. */
  traceparents: ReceivedTraceparent[];
  closed: boolean;
};

/** A request that carried a traceparent: when, which route, and the header as received. */
export type ReceivedTraceparent = { at: string; method: string; path: string; traceparent: string };

/** How many received traceparents the sandbox keeps. */
export const TRACEPARENTS_KEPT = 1000;

/** Resolves the options (defaults, checked fault and rate settings) and opens the world (loaded from dataFile, else seeded). */
export function createSandboxContext(opts: SandboxOptions = {}): SandboxContext {
  const now = opts.now ?? Date.now;
  const sms: SmsSettings = { ...DEFAULT_SMS, ...opts.sms };
  const { world, loaded } = openWorld(opts.dataFile, Math.round(sms.startBalance * 100), now);
  if (loaded) opts.log?.info({ dataFile: opts.dataFile }, "sandbox world loaded");
  return {
    world,
    now,
    random: opts.random ?? Math.random,
    log: opts.log,
    dataFile: opts.dataFile,
    access: opts.access,
    sms,
    signupTtlMs: opts.signupTtlMs ?? 15 * 60_000,
    sessionTtlMs: opts.sessionTtlMs ?? 30 * 86_400_000,
    saveDelayMs: opts.saveDelayMs ?? 250,
    heartbeatMs: opts.heartbeatMs ?? 15_000,
    faults: checkFaults({ ...DEFAULT_FAULTS, ...opts.faults, latency: { ...DEFAULT_FAULTS.latency, ...opts.faults?.latency } }),
    rateLimit: checkRateLimit({ burst: 20, perSecond: 1, ...opts.rateLimit }),
    buckets: new Map(),
    byLogin: new Map(PLATFORMS.map((p) => [p, new Map(Object.values(world.platforms[p].users).map((u) => [u.login.toLowerCase(), u.id]))])),
    activeRentals: new Map(Object.values(world.sms.rentals).filter((r) => r.status === "active").map((r) => [r.phone, r])),
    codeTimers: new Set(),
    smsListeners: new Set(),
    saveTimer: undefined,
    lastSaveMs: 0,
    traceparents: [],
    closed: false,
  };
}
