/**
 * The sandbox over node:http: one route table per namespace (/v1/{platform}, /v1/sms, /v1/admin)
 * onto the rules of social.ts and sms-side.ts behind the guards, the SSE stream of delivered SMS,
 * and the one mapping of SandboxError to an HTTP status (`statusOf`).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { isLoopback } from "../config/config.ts";
import { PLATFORMS, isPlatform } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { checkAccess, faultDelay, idempotencyKeyOf, injectFailure, remember, replay, setFaults, setRateLimit, spendAction } from "./guards.ts";
import type { Faults, RateLimit } from "./guards.ts";
import { TRACEPARENTS_KEPT } from "./sandbox-context.ts";
import type { SandboxContext } from "./sandbox-context.ts";
import { SandboxError, bad, missing, str } from "./sandbox-error.ts";
import type { Body, SandboxErrorCode } from "./sandbox-error.ts";
import { changed } from "./sandbox-world.ts";
import type { SandboxPlatformState, SandboxSmsEvent, SandboxUser } from "./sandbox-world.ts";
import * as social from "./social.ts";
import type { Outcome } from "./social.ts";
import * as smsSide from "./sms-side.ts";

type Reply = [status: number, body: unknown, headers?: Record<string, string>];
type Route = [pattern: string, run: (params: string[], body: Body, req: http.IncomingMessage) => Reply | Promise<Reply>];

/** The HTTP side of one sandbox: its routes, open event streams and server. */
export type SandboxHttp = {
  ctx: SandboxContext;
  admin: Route[];
  sms: Route[];
  platforms: Record<Platform, Route[]>;
  /** Open SSE responses and the SMS listener feeding each. */
  streams: Map<http.ServerResponse, (e: SandboxSmsEvent) => void>;
  streamStats: { connects: number; lastEventIds: string[] };
  server: http.Server | undefined;
};

/** Each refusal's status and the `error` field the answer names it by (when not the code itself). */
const ANSWERS: Record<SandboxErrorCode, [status: number, error?: string]> = {
  invalid: [400], unknown_service: [400], wrong_code: [400], body_too_large: [413, "invalid"], key_reused: [422, "invalid"],
  unauthorized: [401], access_denied: [401, "unauthorized"], insufficient_balance: [402], banned: [403], suspended: [403], not_found: [404],
  login_taken: [409], already_confirmed: [409], no_numbers: [409], expired: [410], rate_limited: [429], unavailable: [503],
};

/** The HTTP status of a refusal. */
export const statusOf = (err: SandboxError): number => ANSWERS[err.code][0];

/** A refusal as an answer: status, {error, message}, and the headers it calls for (Retry-After, WWW-Authenticate). */
function refusal(err: SandboxError): Reply {
  const [status, error = err.code] = ANSWERS[err.code];
  const headers: Record<string, string> = {};
  if (err.code === "rate_limited") headers["retry-after"] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
  if (err.code === "access_denied") headers["www-authenticate"] = "Bearer";
  return [status, { error, message: err.message }, headers];
}

/** Matches "POST posts/:/likes" against a method and path segments; returns the ":" parts or null. */
export function match(method: string, seg: string[], pattern: string): string[] | null {
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

const bearer = (req: http.IncomingMessage) => /^Bearer (\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
const REPLAYED = { "idempotent-replayed": "true" };

/**
 * Wraps one of the eight actions: session, standing, idempotency key, rate limit; the state
 * changes are saved. A key seen before answers what it answered then (not rate limited, not run).
 */
function action(ctx: SandboxContext, p: Platform, run: (u: SandboxUser, s: SandboxPlatformState, id: string, b: Body) => Outcome) {
  return ([id]: string[], b: Body, req: http.IncomingMessage): Reply => {
    const u = social.sessionUser(ctx, p, bearer(req));
    social.checkStanding(u);
    const s = ctx.world.platforms[p];
    const key = idempotencyKeyOf(req.headers["idempotency-key"]);
    const seen = key ? replay(ctx, s, key, u.id) : undefined;
    if (seen) return [seen.status, seen.body, REPLAYED];
    spendAction(ctx, p, u.id);
    const out = run(u, s, id, b);
    const status = out.created ? 201 : 200;
    if (key) remember(s, key, { userId: u.id, status, body: out.body, at: ctx.now(), replays: 0 });
    changed(ctx);
    return [status, out.body];
  };
}

function platformRoutes(ctx: SandboxContext, p: Platform): Route[] {
  const standing = (id: string, status: "banned" | "suspended" | "active", b: Body): Reply => [200, social.standingView(social.setStatus(ctx, p, id, status, str(b, "reason")))];
  return [
    ["POST signups", (_, b) => [201, social.signUp(ctx, p, b)]],
    ["POST signups/:/confirm", ([id], b) => [200, social.confirm(ctx, p, id, b)]],
    ["POST sessions", (_, b) => [200, social.login(ctx, p, b)]],
    ["GET me", (_, __, req) => [200, social.me(social.sessionUser(ctx, p, bearer(req)))]],
    ["GET feed", (_, __, req) => [200, social.feed(ctx.world.platforms[p], social.sessionUser(ctx, p, bearer(req)))]],
    ["GET users/:", action(ctx, p, (_, s, id) => social.viewProfile(s, id))],
    ["GET users/:/stories", action(ctx, p, (u, s, id) => social.viewStories(s, u, id))],
    ["POST posts/:/likes", action(ctx, p, (u, s, id) => social.like(s, u, id))],
    ["POST posts/:/comments", action(ctx, p, (u, s, id, b) => social.comment(ctx, s, u, id, b))],
    ["POST posts/:/reposts", action(ctx, p, (u, s, id, b) => social.repost(ctx, s, u, id, b))],
    ["POST groups/:/members", action(ctx, p, (u, s, id) => social.joinGroup(s, u, id))],
    ["POST users/:/messages", action(ctx, p, (u, s, id, b) => social.sendMessage(ctx, s, u, id, b))],
    ["POST users/:/friend-requests", action(ctx, p, (u, s, id) => social.befriend(ctx, s, u, id))],
    ["POST admin/users", (_, b) => [201, social.addUser(ctx, p, b)]],
    ["POST admin/users/:/ban", ([id], b) => standing(id, "banned", b)],
    ["POST admin/users/:/suspend", ([id], b) => standing(id, "suspended", b)],
    ["POST admin/users/:/reinstate", ([id]) => standing(id, "active", {})],
  ];
}

function smsRoutes(ctx: SandboxContext): Route[] {
  return [
    ["POST rentals", (_, b) => [201, smsSide.rent(ctx, b)]],
    ["GET rentals/:", ([ref]) => [200, smsSide.rental(ctx, ref)]],
    ["POST rentals/:/cancel", ([ref]) => [200, smsSide.cancel(ctx, ref)]],
    ["POST rentals/:/finish", ([ref]) => [200, smsSide.finish(ctx, ref)]],
    ["GET balance", () => [200, smsSide.balance(ctx)]],
    ["POST admin/top-up", (_, b) => [200, { balance: smsSide.topUp(ctx, Number(b.amount)), currency: "RUB" }]],
  ];
}

function adminRoutes(ctx: SandboxContext): Route[] {
  return [
    ["GET faults", () => [200, ctx.faults]],
    ["POST faults", (_, b) => [200, setFaults(ctx, b as Partial<Faults>)]],
    ["GET rate-limit", () => [200, ctx.rateLimit]],
    ["POST rate-limit", (_, b) => [200, setRateLimit(ctx, b as Partial<RateLimit>)]],
    ["GET traceparents", () => [200, { received: ctx.traceparents }]],
  ];
}

/** The HTTP side over `ctx`: routes built once; no server until listen(). */
export function createSandboxHttp(ctx: SandboxContext): SandboxHttp {
  const platforms = Object.fromEntries(PLATFORMS.map((p) => [p, platformRoutes(ctx, p)])) as Record<Platform, Route[]>;
  return { ctx, admin: adminRoutes(ctx), sms: smsRoutes(ctx), platforms, streams: new Map(), streamStats: { connects: 0, lastEventIds: [] }, server: undefined };
}

function readJson(req: http.IncomingMessage): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) reject(new SandboxError("body_too_large", "body over 64 KiB"));
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

async function dispatch(web: SandboxHttp, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { ctx } = web;
  const url = new URL(req.url ?? "/", "http://sandbox");
  const seg = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const method = req.method ?? "GET";
  if (seg[0] !== "v1") throw missing("route", url.pathname);
  if (seg[1] === "admin" || seg[1] === "sms" || (isPlatform(seg[1]) && seg[2] === "admin")) await checkAccess(ctx, req.headers.authorization);
  if (method === "GET" && seg[1] === "sms" && seg[2] === "events" && seg.length === 3) return openStream(web, req, res, url);
  const body = method === "POST" ? await readJson(req) : {};
  let routes: Route[];
  const rest = seg.slice(2);
  if (seg[1] === "admin") routes = web.admin;
  else if (seg[1] === "sms") routes = web.sms;
  else if (isPlatform(seg[1])) {
    routes = web.platforms[seg[1]];
    if (rest[0] !== "admin") {
      const delay = faultDelay(ctx);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      injectFailure(ctx);
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

/** The sandbox's request handler (mountable on any node:http server). */
export function handle(web: SandboxHttp, req: http.IncomingMessage, res: http.ServerResponse): void {
  const tp = req.headers.traceparent;
  if (typeof tp === "string") recordTraceparent(web.ctx, req, tp);
  dispatch(web, req, res).catch((err: unknown) => {
    if (err instanceof SandboxError) return sendJson(res, ...refusal(err));
    web.ctx.log?.error({ err: String(err), url: req.url }, "sandbox handler failed");
    sendJson(res, 500, { error: "internal", message: "internal error" });
  });
}

/**
 * Keeps the traceparent a request carried (the W3C trace context Conveer's driver sends through
 * the proxy), so a test or an operator can see that a trace reached the platform. The path's
 * query string is left out.
 */
function recordTraceparent(ctx: SandboxContext, req: http.IncomingMessage, traceparent: string): void {
  const list = ctx.traceparents;
  list.push({ at: new Date().toISOString(), method: req.method ?? "", path: (req.url ?? "").split("?")[0].slice(0, 200), traceparent: traceparent.slice(0, 100) });
  if (list.length > TRACEPARENTS_KEPT) list.splice(0, list.length - TRACEPARENTS_KEPT);
}

// -------------------------------------------------------------------------------------------
// The SSE stream of delivered SMS (/v1/sms/events)

const frame = (e: SandboxSmsEvent) => `id: ${e.id}\nevent: sms\ndata: ${JSON.stringify({ ref: e.ref, phone: e.phone, text: e.text, code: e.code, at: new Date(e.at).toISOString() })}\n\n`;

/** Streams delivered SMS to `res`, first replaying those after Last-Event-ID (header or ?last_event_id). */
function openStream(web: SandboxHttp, req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const { ctx, streamStats } = web;
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const lastHeader = req.headers["last-event-id"];
  const last = typeof lastHeader === "string" ? lastHeader : url.searchParams.get("last_event_id");
  streamStats.connects++;
  if (last !== null) streamStats.lastEventIds = [...streamStats.lastEventIds, last].slice(-100);
  res.write(": connected\n\n");
  if (last !== null && /^\d+$/.test(last)) for (const e of ctx.world.sms.events) if (e.id > Number(last)) res.write(frame(e));
  const listener = (e: SandboxSmsEvent) => {
    if (!res.destroyed) res.write(frame(e));
  };
  web.streams.set(res, listener);
  ctx.smsListeners.add(listener);
  const hb = setInterval(() => res.write(": ping\n\n"), ctx.heartbeatMs);
  res.on("close", () => {
    clearInterval(hb);
    web.streams.delete(res);
    ctx.smsListeners.delete(listener);
  });
}

/** Ends every event stream: politely (`end`) on close, abruptly (`destroy`) to test reconnection. */
export function endStreams(web: SandboxHttp, how: "end" | "destroy"): void {
  for (const [res, listener] of web.streams) {
    if (how === "end") {
      res.end();
      continue;
    }
    web.streams.delete(res);
    web.ctx.smsListeners.delete(listener);
    res.destroy();
  }
}

// -------------------------------------------------------------------------------------------
// Server

/** Listens on "host:port" (port 0: any free one); without an access token, on loopback only. */
export function listen(web: SandboxHttp, addr: string): Promise<{ url: string; port: number }> {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(addr);
  if (!m) return Promise.reject(new Error(`sandbox address ${JSON.stringify(addr)} is not host:port`));
  const host = m[1].replace(/^\[|\]$/g, "") || "127.0.0.1";
  if (!web.ctx.access?.token && !isLoopback(host)) {
    return Promise.reject(
      new Error(`refusing to listen on ${addr}: without CONVEER_SANDBOX_TOKEN the sandbox's admin and SMS endpoints answer anyone, so it listens on loopback only. Set CONVEER_SANDBOX_TOKEN (e.g. \`openssl rand -hex 24\`), or listen on 127.0.0.1`),
    );
  }
  const srv = (web.server = http.createServer((req, res) => handle(web, req, res)));
  return new Promise((resolve, reject) => {
    srv.once("error", (err) => reject(new Error(`the sandbox cannot listen on ${addr}: ${err.message}`)));
    srv.listen(Number(m[2]), host, () => {
      const port = (srv.address() as AddressInfo).port;
      const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
      web.ctx.log?.info({ port }, "sandbox listening");
      resolve({ url: `http://${shown}:${port}`, port });
    });
  });
}

/** Closes the server (if listening) and every connection. */
export async function closeServer(web: SandboxHttp): Promise<void> {
  const srv = web.server;
  if (!srv) return;
  await new Promise<void>((resolve) => {
    srv.close(() => resolve());
    srv.closeAllConnections();
  });
}
