/**
 * The sandbox SMS provider: SmsProvider over the sandbox's /v1/sms API, with ONE Server-Sent Events
 * subscription per provider for delivered messages. The stream reconnects with Last-Event-ID and
 * exponential backoff, so a dropped connection loses nothing; close() ends it and every request.
 */
import http from "node:http";
import { SmsProviderError } from "../sms/provider.ts";
import type { DeliveredSms, Rental, SmsProvider, SmsProviderErrorKind } from "../sms/provider.ts";
import { parseBase, requestJson } from "./http-json.ts";
import type { JsonAnswer } from "./http-json.ts";

/**
 * Options: the sandbox URL, the token its SMS side requires (CONVEER_SANDBOX_TOKEN; "" for none), per-request time limit
 * (default 10 s), reconnect backoff (default 200 ms..5 s), stream idle limit (default 45 s).
 */
export type SandboxSmsProviderOptions = { baseUrl: string; token?: string; timeoutMs?: number; backoff?: { minMs: number; maxMs: number }; idleTimeoutMs?: number };

/** The sandbox provider; ready() resolves once the message stream is connected (after the first onMessage). */
export type SandboxSmsProvider = SmsProvider & { ready(): Promise<void> };

const KINDS: SmsProviderErrorKind[] = ["unknown_service", "no_numbers", "insufficient_balance", "not_found", "unavailable"];

/** The provider's state: resolved options, open calls, and the one event stream with its subscribers. */
type ProviderContext = {
  base: { host: string; port: number; prefix: string };
  token: string | undefined;
  timeoutMs: number;
  backoff: { minMs: number; maxMs: number };
  idleTimeoutMs: number;
  agent: http.Agent;
  calls: Set<AbortController>;
  listeners: Set<(m: DeliveredSms) => void>;
  /** ready() callers waiting for the stream to connect. */
  waiters: (() => void)[];
  stream: { req: http.ClientRequest; gone: Promise<void> } | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  /** Reconnects since the last successful connection (the backoff's exponent). */
  attempt: number;
  /** The last event id seen: a reconnect asks for what came after it. */
  lastId: string;
  connected: boolean;
  closed: boolean;
};

/** One request to the sandbox's SMS side: its JSON body on 2xx, else an SmsProviderError of the matching kind. */
async function call(ctx: ProviderContext, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  if (ctx.closed) throw new SmsProviderError("unavailable", "the sandbox SMS provider is closed");
  const ac = new AbortController();
  ctx.calls.add(ac);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, ctx.timeoutMs);
  let a: JsonAnswer;
  try {
    a = await requestJson(ctx.base, method, path, { body, token: ctx.token, signal: ac.signal, agent: ctx.agent });
  } catch (err) {
    const why = timedOut ? `no answer within ${ctx.timeoutMs} ms` : ctx.closed ? "the provider was closed" : err instanceof Error ? err.message : String(err);
    throw new SmsProviderError("unavailable", `cannot reach the sandbox SMS side: ${why}`);
  } finally {
    clearTimeout(timer);
    ctx.calls.delete(ac);
  }
  if (a.status >= 200 && a.status < 300) return a.body;
  const message = typeof a.body.message === "string" ? a.body.message : `HTTP ${a.status}`;
  const named = KINDS.find((k) => k === a.body.error);
  if (a.status === 401) throw new SmsProviderError("unavailable", `the sandbox SMS side refused Conveer's token (set the same CONVEER_SANDBOX_TOKEN on both): ${message}`);
  const kind = named ?? (a.status === 404 ? "not_found" : a.status === 402 ? "insufficient_balance" : "unavailable");
  throw new SmsProviderError(kind, message);
}

// -------------------------------------------------------------------------------------------
// The event stream

/** One SSE block (the lines between blank lines): its id, if any, and the SMS it carries, if it is a well-formed sms/message event. */
export function parseSseBlock(block: string): { id: string | undefined; sms: DeliveredSms | undefined } {
  let id: string | undefined;
  let event = "message";
  const data: string[] = [];
  for (const raw of block.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0 || (event !== "sms" && event !== "message")) return { id, sms: undefined };
  try {
    const v = JSON.parse(data.join("\n")) as Record<string, string>;
    return { id, sms: { ref: String(v.ref), phone: String(v.phone), text: String(v.text ?? ""), code: String(v.code ?? ""), at: new Date(v.at) } };
  } catch {
    return { id, sms: undefined };
  }
}

/** Notes a block's id and hands its SMS to every listener. */
function dispatch(ctx: ProviderContext, block: string): void {
  const { id, sms } = parseSseBlock(block);
  if (id !== undefined) ctx.lastId = id;
  if (!sms) return;
  for (const l of [...ctx.listeners]) {
    try {
      l(sms);
    } catch {
      // a listener's failure is its own
    }
  }
}

/** Schedules a reconnect after exponential backoff with jitter, while anyone listens. */
function retry(ctx: ProviderContext): void {
  if (ctx.closed || ctx.listeners.size === 0) return;
  const { minMs, maxMs } = ctx.backoff;
  const delay = Math.min(maxMs, minMs * 2 ** ctx.attempt++) * (0.8 + 0.4 * Math.random());
  ctx.retryTimer = setTimeout(() => {
    ctx.retryTimer = undefined;
    if (!ctx.closed && ctx.listeners.size > 0 && !ctx.stream) connect(ctx);
  }, delay);
}

/** Opens the event stream (resuming after lastId); when it ends other than by stop(), retries. */
function connect(ctx: ProviderContext): void {
  const { base, token } = ctx;
  const headers: Record<string, string> = { accept: "text/event-stream" };
  if (ctx.lastId) headers["last-event-id"] = ctx.lastId;
  if (token) headers.authorization = `Bearer ${token}`;
  const req = http.get({ host: base.host, port: base.port, path: `${base.prefix}/v1/sms/events`, headers, agent: false });
  const gone = new Promise<void>((resolve) => req.once("close", resolve));
  const current = { req, gone };
  ctx.stream = current;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    req.destroy();
    if (ctx.stream !== current) return; // stopped on purpose
    ctx.stream = undefined;
    ctx.connected = false;
    retry(ctx);
  };
  req.setTimeout(ctx.idleTimeoutMs, end);
  req.on("error", end);
  req.on("close", end);
  req.on("response", (res) => {
    if (res.statusCode !== 200) {
      res.resume();
      return end();
    }
    ctx.attempt = 0;
    ctx.connected = true;
    for (const w of ctx.waiters.splice(0)) w();
    res.setEncoding("utf8");
    let buf = "";
    res.on("data", (chunk: string) => {
      buf += chunk;
      for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        dispatch(ctx, block);
      }
    });
    res.on("error", end);
    res.on("end", end);
  });
}

/** Ends the stream and any pending reconnect; keeps lastId so a later subscription resumes where this one stopped. */
function stop(ctx: ProviderContext): Promise<void> {
  clearTimeout(ctx.retryTimer);
  ctx.retryTimer = undefined;
  const s = ctx.stream;
  ctx.stream = undefined;
  ctx.connected = false;
  if (!s) return Promise.resolve();
  s.req.destroy();
  return s.gone;
}

/** Creates the provider; nothing connects until a call or the first onMessage. */
export function createSandboxSmsProvider(opts: SandboxSmsProviderOptions): SandboxSmsProvider {
  const ctx: ProviderContext = {
    base: parseBase(opts.baseUrl),
    token: opts.token,
    timeoutMs: opts.timeoutMs ?? 10_000,
    backoff: opts.backoff ?? { minMs: 200, maxMs: 5000 },
    idleTimeoutMs: opts.idleTimeoutMs ?? 45_000,
    agent: new http.Agent({ keepAlive: true }),
    calls: new Set(),
    listeners: new Set(),
    waiters: [],
    stream: undefined,
    retryTimer: undefined,
    attempt: 0,
    lastId: "",
    connected: false,
    closed: false,
  };
  return {
    name: "sandbox",
    currency: "RUB",
    async rent(req: { service: string; country: string; operator: string }): Promise<Rental> {
      const b = await call(ctx, "POST", "/v1/sms/rentals", { service: req.service, country: req.country, operator: req.operator });
      return { ref: String(b.ref), phone: String(b.phone), price: Number(b.price), expiresAt: new Date(String(b.expires_at)) };
    },
    async cancel(ref: string) {
      const b = await call(ctx, "POST", `/v1/sms/rentals/${encodeURIComponent(ref)}/cancel`);
      return { refunded: b.refunded === true };
    },
    async finish(ref: string) {
      await call(ctx, "POST", `/v1/sms/rentals/${encodeURIComponent(ref)}/finish`);
    },
    async balance() {
      return Number((await call(ctx, "GET", "/v1/sms/balance")).balance);
    },
    onMessage(listener: (m: DeliveredSms) => void): () => void {
      ctx.listeners.add(listener);
      if (!ctx.closed && !ctx.stream && !ctx.retryTimer) connect(ctx);
      return () => {
        ctx.listeners.delete(listener);
        if (ctx.listeners.size === 0) void stop(ctx);
      };
    },
    ready(): Promise<void> {
      if (ctx.connected || ctx.closed) return Promise.resolve();
      return new Promise((resolve) => ctx.waiters.push(resolve));
    },
    async close(): Promise<void> {
      if (ctx.closed) return;
      ctx.closed = true;
      ctx.listeners.clear();
      for (const ac of ctx.calls) ac.abort();
      for (const w of ctx.waiters.splice(0)) w();
      await stop(ctx);
      ctx.agent.destroy();
    },
  };
}
