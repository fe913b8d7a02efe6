/**
 * The sandbox driver: PlatformDriver over the sandbox's HTTP API, through the account's proxy
 * (HTTP CONNECT or SOCKS5, via dialThroughProxy) when ctx.proxy is set.
 */
import http from "node:http";
import type net from "node:net";
import type { Platform } from "../domain.ts";
import { AppError, quote } from "../errors.ts";
import { dialThroughProxy } from "../proxies/proxy-dial.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";
import { DriverError } from "../platforms/driver.ts";
import type { ActionKind, DriverContext, DriverSession, PlatformAccountStatus, PlatformDriver, SignUpInput } from "../platforms/driver.ts";
import { parseBase, requestJson } from "./http-json.ts";
import type { JsonAnswer } from "./http-json.ts";
import { CLIENT, inSpan } from "../telemetry/tracing.ts";
import type { Attributes, Span } from "../telemetry/tracing.ts";

/** Options of the sandbox driver: the sandbox's URL and a per-request time limit (default 10 s, proxy dial included). */
export type SandboxDriverOptions = { baseUrl: string; timeoutMs?: number };

type Target = "user" | "post" | "group";
/** Each action as a request: the kind of target, its param name, and the route. */
const ACTIONS: Record<ActionKind, { target: Target; method: "GET" | "POST"; path: (id: string) => string; text?: string }> = {
  view_profile: { target: "user", method: "GET", path: (id) => `/users/${id}` },
  like_post: { target: "post", method: "POST", path: (id) => `/posts/${id}/likes` },
  subscribe: { target: "group", method: "POST", path: (id) => `/groups/${id}/members` },
  comment: { target: "post", method: "POST", path: (id) => `/posts/${id}/comments`, text: "Nice post!" },
  send_message: { target: "user", method: "POST", path: (id) => `/users/${id}/messages`, text: "Hi!" },
  repost: { target: "post", method: "POST", path: (id) => `/posts/${id}/reposts` },
  view_stories: { target: "user", method: "GET", path: (id) => `/users/${id}/stories` },
  add_friend: { target: "user", method: "POST", path: (id) => `/users/${id}/friend-requests` },
};
/** How long a loaded feed is reused, and how many sessions' feeds are kept. */
const FEED_TTL_MS = 30_000;
const MAX_FEEDS = 10_000;
/** Keep-alive agents kept (one per proxy in use). */
const MAX_AGENTS = 1000;
// Abort reasons, built once (an abort without a reason makes a DOMException with a stack).
const CANCELLED = new Error("cancelled");
const TIMED_OUT = new Error("timed out");

/** An id segment after a collection, replaced by {id} in span names (ids would make every name unique). */
const ID_SEGMENT = /\/(users|posts|groups|signups)\/[^/]+/g;

const FEED_KEY: Record<Target, string> = { user: "users", post: "posts", group: "groups" };

/** Maps a non-2xx sandbox answer to a DriverError. */
function toDriverError(a: JsonAnswer): DriverError {
  const error = typeof a.body.error === "string" ? a.body.error : "";
  const message = typeof a.body.message === "string" && a.body.message ? a.body.message : `HTTP ${a.status}`;
  switch (a.status) {
    case 429: {
      const s = Number(a.retryAfter);
      return new DriverError("rate_limited", message, Number.isFinite(s) && s > 0 ? s * 1000 : 1000);
    }
    case 403:
      return new DriverError(error === "suspended" ? "suspended" : "banned", message);
    case 404:
      return new DriverError("not_found", message);
    case 401:
      return new DriverError("unauthorized", message);
    case 410:
      return new DriverError("expired", message);
    case 400:
      return new DriverError(error === "wrong_code" ? "wrong_code" : "invalid", message);
    case 409:
    case 413:
    case 422:
      return new DriverError("invalid", message);
    default:
      return new DriverError("unavailable", `sandbox answered HTTP ${a.status}: ${message}`);
  }
}

/** Flattens an answer's fields to strings (the driver's `data`). */
const strings = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));

/** What one request to the sandbox may carry beside its method and path. */
type RequestOptions = { body?: unknown; token?: string; idempotencyKey?: string };

/**
 * One request to the sandbox in a CLIENT span ("POST /v1/vk/signups/{id}/confirm"); its
 * traceparent travels in the request's headers, through the proxy, to the sandbox.
 */
function inRequestSpan<T>(platform: Platform, base: { host: string; port: number }, method: string, path: string, proxy: ProxyEndpoint | undefined, send: (span: Span) => Promise<T>): Promise<T> {
  const template = path.replace(ID_SEGMENT, "/$1/{id}");
  const attributes: Attributes = { "http.request.method": method, "url.template": template, "server.address": base.host, "server.port": base.port, "conveer.platform": platform };
  if (proxy) attributes["conveer.proxy"] = `${proxy.host}:${proxy.port}`;
  return inSpan(`${method} ${template}`, { kind: CLIENT, attributes }, send);
}

/** A PlatformDriver for one sandbox namespace (/v1/{platform}). */
export function createSandboxDriver(platform: Platform, opts: SandboxDriverOptions): PlatformDriver {
  const base = parseBase(opts.baseUrl);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const ns = `/v1/${platform}`;

  /**
   * Keep-alive agents, one per proxy: a tunnel opened through a proxy carries later requests too
   * (it closes after the sandbox's keep-alive idle time), instead of a CONNECT or SOCKS5
   * handshake per request. Without a proxy, one agent straight to the sandbox.
   */
  const agents = new Map<string, http.Agent>();
  function agentFor(proxy: ProxyEndpoint | undefined): http.Agent {
    const key = proxy ? `${proxy.protocol}://${proxy.username ?? ""}:${proxy.password ?? ""}@${proxy.host}:${proxy.port}` : "";
    let agent = agents.get(key);
    if (!agent) {
      agent = new http.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64 });
      if (proxy) {
        // Node's Agent accepts a socket made asynchronously through the callback.
        agent.createConnection = ((_opts: unknown, done: (err: Error | null, socket?: net.Socket) => void) => {
          dialThroughProxy(proxy, { host: base.host, port: base.port }, { timeoutMs }).then(
            (r) => done(null, r.socket),
            (err: Error) => done(err),
          );
          return undefined;
        }) as unknown as http.Agent["createConnection"];
      }
      agents.set(key, agent);
      // Proxies come and go: keep the agents of the most recent MAX_AGENTS.
      if (agents.size > MAX_AGENTS) {
        const [oldest, old] = agents.entries().next().value!;
        agents.delete(oldest);
        old.destroy();
      }
    }
    return agent;
  }

  const call = (method: string, path: string, ctx: DriverContext, o: RequestOptions = {}) => inRequestSpan(platform, base, method, ns + path, ctx.proxy, (span) => send(method, path, ctx, o, span));

  async function send(method: string, path: string, ctx: DriverContext, o: RequestOptions, span: Span): Promise<Record<string, unknown>> {
    if (ctx.signal?.aborted) throw new AppError("CANCELLED", `the ${platform} call was cancelled`);
    const ac = new AbortController();
    const onAbort = () => ac.abort(CANCELLED);
    ctx.signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort(TIMED_OUT);
    }, timeoutMs);
    try {
      const answer = await requestJson(base, method, ns + path, { ...o, signal: ac.signal, agent: agentFor(ctx.proxy) });
      span.setAttribute("http.response.status_code", answer.status);
      if (answer.status >= 200 && answer.status < 300) return answer.body;
      throw toDriverError(answer);
    } catch (err) {
      if (err instanceof DriverError) throw err;
      if (ctx.signal?.aborted) throw new AppError("CANCELLED", `the ${platform} call was cancelled`);
      if (timedOut) throw new DriverError("unavailable", `the sandbox ${platform} did not answer within ${timeoutMs} ms`);
      const via = ctx.proxy ? ` through proxy ${ctx.proxy.host}:${ctx.proxy.port}` : "";
      throw new DriverError("unavailable", `cannot reach the sandbox ${platform}${via}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      clearTimeout(timer);
      ctx.signal?.removeEventListener("abort", onAbort);
    }
  }

  const session = (b: Record<string, unknown>): DriverSession => ({ userId: String(b.user_id ?? ""), sessionToken: String(b.session_token ?? "") });

  /**
   * Feeds read lately, by session: an account acting several times in a row picks its targets
   * from the feed it loaded, as a person scrolling one does, instead of reloading it per action.
   */
  const feeds = new Map<string, { at: number; feed: Record<string, unknown> }>();
  async function feedOf(s: DriverSession, ctx: DriverContext): Promise<Record<string, unknown>> {
    const cached = feeds.get(s.sessionToken);
    if (cached && Date.now() - cached.at < FEED_TTL_MS) return cached.feed;
    const feed = await call("GET", "/feed", ctx, { token: s.sessionToken });
    feeds.delete(s.sessionToken);
    feeds.set(s.sessionToken, { at: Date.now(), feed });
    if (feeds.size > MAX_FEEDS) feeds.delete(feeds.keys().next().value!);
    return feed;
  }

  /** The target id from params (user_id / post_id / group_id, or target_id), else a random one from the session's feed. */
  async function targetOf(kind: Target, params: Record<string, string>, s: DriverSession, ctx: DriverContext): Promise<string> {
    const given = params[`${kind}_id`] || params.target_id;
    if (given) return given;
    const feed = await feedOf(s, ctx);
    const ids = Array.isArray(feed[FEED_KEY[kind]]) ? (feed[FEED_KEY[kind]] as string[]) : [];
    if (ids.length === 0) throw new DriverError("not_found", `no ${kind} to act on in the sandbox ${platform}`);
    return ids[Math.floor(Math.random() * ids.length)];
  }

  return {
    platform,
    async startSignUp(input: SignUpInput, ctx: DriverContext) {
      const body = { login: input.login, password: input.password, phone: input.phone, first_name: input.firstName, last_name: input.lastName, fields: input.fields };
      const b = await call("POST", "/signups", ctx, { body });
      return { signupId: String(b.signup_id) };
    },
    async confirmSignUp(signupId: string, code: string, ctx: DriverContext) {
      return session(await call("POST", `/signups/${encodeURIComponent(signupId)}/confirm`, ctx, { body: { code } }));
    },
    async login(login: string, password: string, ctx: DriverContext) {
      return session(await call("POST", "/sessions", ctx, { body: { login, password } }));
    },
    async execute(action: ActionKind, params: Record<string, string>, s: DriverSession, ctx: DriverContext) {
      const a = Object.hasOwn(ACTIONS, action) ? ACTIONS[action] : undefined;
      if (!a) throw new DriverError("invalid", `unknown action ${quote(action)}`);
      const id = await targetOf(a.target, params, s, ctx);
      const body = a.method === "POST" ? (a.text ? { text: params.text || a.text } : params.text ? { text: params.text } : {}) : undefined;
      // params.idempotency_key (warming sends one per planned action): a repeat is answered, not run again.
      const out = await call(a.method, a.path(encodeURIComponent(id)), ctx, { body, token: s.sessionToken, idempotencyKey: params.idempotency_key });
      return { data: { target_id: id, ...strings(out) } };
    },
    async accountStatus(s: DriverSession, ctx: DriverContext): Promise<PlatformAccountStatus> {
      const b = await call("GET", "/me", ctx, { token: s.sessionToken });
      const status = b.status === "banned" || b.status === "suspended" ? b.status : "active";
      return { status, reason: typeof b.reason === "string" ? b.reason : "" };
    },
  };
}
