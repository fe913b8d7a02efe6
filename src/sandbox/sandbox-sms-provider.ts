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

/** Creates the provider; nothing connects until a call or the first onMessage. */
export function createSandboxSmsProvider(opts: SandboxSmsProviderOptions): SandboxSmsProvider {
  const base = parseBase(opts.baseUrl);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { minMs, maxMs } = opts.backoff ?? { minMs: 200, maxMs: 5000 };
  const idleTimeoutMs = opts.idleTimeoutMs ?? 45_000;
  const agent = new http.Agent({ keepAlive: true });
  const calls = new Set<AbortController>();
  const listeners = new Set<(m: DeliveredSms) => void>();
  let waiters: (() => void)[] = [];
  let stream: { req: http.ClientRequest; gone: Promise<void> } | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let lastId = "";
  let connected = false;
  let closed = false;

  async function call(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    if (closed) throw new SmsProviderError("unavailable", "the sandbox SMS provider is closed");
    const ac = new AbortController();
    calls.add(ac);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    let a: JsonAnswer;
    try {
      a = await requestJson(base, method, path, { body, token: opts.token, signal: ac.signal, agent });
    } catch (err) {
      const why = timedOut ? `no answer within ${timeoutMs} ms` : closed ? "the provider was closed" : err instanceof Error ? err.message : String(err);
      throw new SmsProviderError("unavailable", `cannot reach the sandbox SMS side: ${why}`);
    } finally {
      clearTimeout(timer);
      calls.delete(ac);
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

  function dispatch(block: string): void {
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
    if (id !== undefined) lastId = id;
    if (data.length === 0 || (event !== "sms" && event !== "message")) return;
    let m: DeliveredSms;
    try {
      const v = JSON.parse(data.join("\n")) as Record<string, string>;
      m = { ref: String(v.ref), phone: String(v.phone), text: String(v.text ?? ""), code: String(v.code ?? ""), at: new Date(v.at) };
    } catch {
      return;
    }
    for (const l of [...listeners]) {
      try {
        l(m);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  function connect(): void {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (lastId) headers["last-event-id"] = lastId;
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const req = http.get({ host: base.host, port: base.port, path: `${base.prefix}/v1/sms/events`, headers, agent: false });
    const gone = new Promise<void>((resolve) => req.once("close", resolve));
    const current = { req, gone };
    stream = current;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      req.destroy();
      if (stream !== current) return; // stopped on purpose
      stream = undefined;
      connected = false;
      if (!closed && listeners.size > 0) {
        const delay = Math.min(maxMs, minMs * 2 ** attempt++) * (0.8 + 0.4 * Math.random());
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          if (!closed && listeners.size > 0 && !stream) connect();
        }, delay);
      }
    };
    req.setTimeout(idleTimeoutMs, end);
    req.on("error", end);
    req.on("close", end);
    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return end();
      }
      attempt = 0;
      connected = true;
      for (const w of waiters.splice(0)) w();
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          dispatch(block);
        }
      });
      res.on("error", end);
      res.on("end", end);
    });
  }

  /** Ends the stream and any pending reconnect; keeps lastId so a later subscription resumes where this one stopped. */
  function stop(): Promise<void> {
    clearTimeout(retryTimer);
    retryTimer = undefined;
    const s = stream;
    stream = undefined;
    connected = false;
    if (!s) return Promise.resolve();
    s.req.destroy();
    return s.gone;
  }

  return {
    name: "sandbox",
    currency: "RUB",
    async rent(req: { service: string; country: string; operator: string }): Promise<Rental> {
      const b = await call("POST", "/v1/sms/rentals", { service: req.service, country: req.country, operator: req.operator });
      return { ref: String(b.ref), phone: String(b.phone), price: Number(b.price), expiresAt: new Date(String(b.expires_at)) };
    },
    async cancel(ref: string) {
      const b = await call("POST", `/v1/sms/rentals/${encodeURIComponent(ref)}/cancel`);
      return { refunded: b.refunded === true };
    },
    async finish(ref: string) {
      await call("POST", `/v1/sms/rentals/${encodeURIComponent(ref)}/finish`);
    },
    async balance() {
      return Number((await call("GET", "/v1/sms/balance")).balance);
    },
    onMessage(listener: (m: DeliveredSms) => void): () => void {
      listeners.add(listener);
      if (!closed && !stream && !retryTimer) connect();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) void stop();
      };
    },
    ready(): Promise<void> {
      if (connected || closed) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      listeners.clear();
      for (const ac of calls) ac.abort();
      for (const w of waiters.splice(0)) w();
      waiters = [];
      await stop();
      agent.destroy();
    },
  };
}
