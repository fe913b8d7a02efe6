/** One JSON request over node:http, through an agent (the sandbox driver's makes its sockets through the account's proxy). */
import http from "node:http";
import { injectInto } from "../telemetry/tracing.ts";

/** An HTTP answer: status, Retry-After header, and the JSON body (an empty object when it is not JSON). */
export type JsonAnswer = { status: number; retryAfter: string | undefined; body: Record<string, unknown> };

/** Where a base URL points: host (IPv6 without brackets), port and path prefix; only http: is accepted. */
export function parseBase(baseUrl: string): { host: string; port: number; prefix: string } {
  const u = new URL(baseUrl);
  if (u.protocol !== "http:") throw new Error(`sandbox URL must be http://host:port, got ${JSON.stringify(baseUrl)}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port) || 80, prefix: u.pathname.replace(/\/+$/, "") };
}

/**
 * Sends one request over `agent` (default: the global one); rejects on network errors and abort. A request that fails on a
 * kept-alive socket the server had just closed (ECONNRESET/EPIPE before any answer) is sent once
 * more on a fresh one, as Node's documentation advises.
 */
export async function requestJson(
  base: { host: string; port: number; prefix: string },
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; idempotencyKey?: string; signal?: AbortSignal; agent?: http.Agent } = {},
): Promise<JsonAnswer> {
  try {
    return await requestOnce(base, method, path, opts);
  } catch (err) {
    if (!(err instanceof StaleSocketError) || opts.signal?.aborted) throw err instanceof StaleSocketError ? err.cause : err;
    return requestOnce(base, method, path, opts);
  }
}

/** A failure on a reused keep-alive socket before any answer: safe to send again. */
class StaleSocketError extends Error {}

function requestOnce(
  base: { host: string; port: number; prefix: string },
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; idempotencyKey?: string; signal?: AbortSignal; agent?: http.Agent },
): Promise<JsonAnswer> {
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { accept: "application/json" };
  if (payload !== undefined) headers["content-type"] = "application/json";
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.idempotencyKey) headers["idempotency-key"] = opts.idempotencyKey;
  // The active span's traceparent (none when tracing is off): the sandbox records what it received.
  injectInto(headers);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: base.host, port: base.port, method, path: base.prefix + path, headers, signal: opts.signal, agent: opts.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          let body: Record<string, unknown> = {};
          try {
            const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            if (v && typeof v === "object") body = v as Record<string, unknown>;
          } catch {
            // not JSON: keep {}
          }
          const ra = res.headers["retry-after"];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(ra) ? ra[0] : ra, body });
        });
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE")) reject(new StaleSocketError(err.message, { cause: err }));
      else reject(err);
    });
    req.end(payload);
  });
}
