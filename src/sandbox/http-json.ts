/** One JSON request over node:http, optionally over a socket already opened (a proxy tunnel). */
import http from "node:http";
import type net from "node:net";

/** An HTTP answer: status, Retry-After header, and the JSON body (an empty object when it is not JSON). */
export type JsonAnswer = { status: number; retryAfter: string | undefined; body: Record<string, unknown> };

/** Where a base URL points: host (IPv6 without brackets), port and path prefix; only http: is accepted. */
export function parseBase(baseUrl: string): { host: string; port: number; prefix: string } {
  const u = new URL(baseUrl);
  if (u.protocol !== "http:") throw new Error(`sandbox URL must be http://host:port, got ${JSON.stringify(baseUrl)}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port) || 80, prefix: u.pathname.replace(/\/+$/, "") };
}

/** Sends one request; rejects on network errors and abort. With `socket`, the request runs over it (Connection: close); else over `agent` (default: the global one). */
export function requestJson(
  base: { host: string; port: number; prefix: string },
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; idempotencyKey?: string; signal?: AbortSignal; socket?: net.Socket; agent?: http.Agent } = {},
): Promise<JsonAnswer> {
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { accept: "application/json" };
  if (payload !== undefined) headers["content-type"] = "application/json";
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.idempotencyKey) headers["idempotency-key"] = opts.idempotencyKey;
  if (opts.socket) headers.connection = "close";
  const socket = opts.socket;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: base.host, port: base.port, method, path: base.prefix + path, headers, signal: opts.signal, ...(socket ? { createConnection: () => socket } : { agent: opts.agent }) },
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
    req.on("error", reject);
    req.end(payload);
  });
}
