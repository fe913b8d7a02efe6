/**
 * The sandbox: a LOCAL simulated social platform that Conveer starts itself (or `conveer sandbox`
 * runs standalone). Four namespaces (/v1/vk, /v1/telegram, /v1/mail, /v1/max) with users, posts,
 * groups, stories, messages and friend requests; sign-up confirmed by a code sent over the
 * sandbox's own SMS side (/v1/sms: a pool of numbers, a balance, an SSE stream of messages).
 * Faults (latency, random 503s, slow or lost codes) and per-account rate limits are configurable.
 * It talks to nothing outside this process.
 *
 * createSandbox only assembles the parts: the context (sandbox-context.ts) over the world
 * (sandbox-world.ts), the rules (social.ts, sms-side.ts), the guards (guards.ts) and the HTTP side (http.ts).
 */
import type http from "node:http";
import type { Logger } from "pino";
import type { Platform } from "../domain.ts";
import { setFaults, setRateLimit } from "./guards.ts";
import type { Faults, RateLimit } from "./guards.ts";
import { closeServer, createSandboxHttp, endStreams, handle, listen } from "./http.ts";
import { createSandboxContext } from "./sandbox-context.ts";
import { saveNow } from "./sandbox-world.ts";
import type { SandboxWorld } from "./sandbox-world.ts";
import { sendSms, topUp } from "./sms-side.ts";
import type { SmsSettings } from "./sms-side.ts";
import { addUser, cancelCodes, resumeCodes, revokeSessions, setStatus, standingView } from "./social.ts";

export type { Faults, RateLimit } from "./guards.ts";
export { IDEMPOTENCY_KEYS_KEPT } from "./guards.ts";
export type { SmsSettings } from "./sms-side.ts";

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

/** Creates a sandbox: the world (loaded from dataFile when it exists, else seeded), the HTTP handler and admin helpers. */
export function createSandbox(opts: SandboxOptions = {}) {
  const ctx = createSandboxContext(opts);
  const web = createSandboxHttp(ctx);
  resumeCodes(ctx);
  const view = (p: Platform, id: string, status: "banned" | "suspended" | "active", reason: string) => standingView(setStatus(ctx, p, id, status, reason));
  return {
    /** The sandbox's request handler (mountable on any node:http server). */
    handler: (req: http.IncomingMessage, res: http.ServerResponse): void => handle(web, req, res),
    /** Listens on "host:port" (port 0: any free one). */
    listen: (addr: string): Promise<{ url: string; port: number }> => listen(web, addr),
    /** Stops listening, ends event streams, cancels pending code timers (persisted ones resume on reload) and saves. */
    async close(): Promise<void> {
      if (ctx.closed) return;
      ctx.closed = true;
      cancelCodes(ctx);
      endStreams(web, "end");
      saveNow(ctx);
      await closeServer(web);
    },
    /** Bans a user: actions answer 403 {error: "banned", reason}. */
    ban: (p: Platform, userId: string, reason: string) => view(p, userId, "banned", reason),
    /** Suspends a user: actions answer 403 {error: "suspended", reason}. */
    suspend: (p: Platform, userId: string, reason: string) => view(p, userId, "suspended", reason),
    /** Makes a user active again. */
    reinstate: (p: Platform, userId: string) => view(p, userId, "active", ""),
    /** Adds an active user who can log in, as if they had signed up outside Conveer (imported accounts); answers its id. */
    addUser: (p: Platform, login: string, password: string): string => addUser(ctx, p, { login, password }).user_id,
    /** Ends a user's sessions (the next call answers 401). */
    revokeSessions: (p: Platform, userId: string): void => revokeSessions(ctx, p, userId),
    /** Changes fault injection at runtime (merged into the current settings). */
    setFaults: (f: Partial<Faults>): Faults => setFaults(ctx, f),
    /** The current fault settings. */
    faults: (): Faults => structuredClone(ctx.faults),
    /** Changes the per-account rate limit (and refills every bucket). */
    setRateLimit: (r: Partial<RateLimit>): RateLimit => setRateLimit(ctx, r),
    /** Adds RUB to the SMS balance; returns the new balance. */
    topUp: (amount: number): number => topUp(ctx, amount),
    /** Sends an SMS to a rented number, as the platform does with codes; null when nobody rents it. */
    sendSms: (service: string, phone: string, text: string) => sendSms(ctx, service, phone, text),
    /** Drops every SSE connection abruptly (subscribers must reconnect). */
    dropEventStreams: (): void => endStreams(web, "destroy"),
    /** SSE statistics: open streams, connections so far, Last-Event-ID values reconnecting clients sent. */
    streamStats: () => ({ open: web.streams.size, connects: web.streamStats.connects, lastEventIds: [...web.streamStats.lastEventIds] }),
    /** The traceparent headers requests carried, newest last (also GET /v1/admin/traceparents). */
    receivedTraceparents: () => web.ctx.traceparents.map((t) => ({ ...t })),
    /** A deep copy of the world, for tests and inspection. */
    state: (): SandboxWorld => structuredClone(ctx.world),
    /** Writes the world to dataFile now (normally debounced). */
    save: (): void => saveNow(ctx),
  };
}
