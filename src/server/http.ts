import { createServer as createHttpServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttp2Server, createSecureServer } from "node:http2";
import type { Http2ServerRequest } from "node:http2";
import { createServer as createNetServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { cors } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Db } from "../store/db.ts";
import { isLoopback, splitHostPort } from "../config/config.ts";
import { connectContextValues } from "./connect-adapter.ts";
import { CONSOLE_CSP, isRpcPath } from "./console-files.ts";
import type { ConsoleFiles } from "./console-files.ts";
import { MAX_MESSAGE_BYTES } from "./grpc-server.ts";
import type { Tls } from "./listen.ts";
import type { Metrics } from "./metrics.ts";

/** Options of the HTTP port. */
export type HttpOptions = {
  addr: string;
  tls: Tls;
  metrics: Metrics;
  db: Db;
  /** How long /healthz waits for the store before answering 503. */
  pingMs: number;
  services: { name: string; implemented: boolean }[];
  /** The RPC routes (Connect, gRPC-Web and gRPC), see connectRoutesOf; none: only /healthz and /metrics. */
  routes?: (router: ConnectRouter) => void;
  /** Origins a browser page may call from (CONVEER_HTTP_CORS_ORIGINS); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  /** True while the server takes anonymous calls: then only a loopback Host is served (DNS rebinding). */
  isOpen: () => Promise<boolean>;
  /** Aborted on shutdown: streams still open end. */
  shutdown: AbortSignal;
  /** The operator console served at `/` (GET and HEAD of any path that is not an RPC, /healthz or /metrics). */
  console?: ConsoleFiles;
};

/** Headers on every answer: nothing here is a page to frame, sniff, cache or refer from. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "cache-control": "no-store",
};

/** Headers a browser client may send: Connect's, plus the token. */
const CORS_ALLOWED_HEADERS = [...cors.allowedHeaders, "Authorization"].join(", ");

type Req = IncomingMessage | Http2ServerRequest;
/** What the port does with an answer, on HTTP/1.1 and HTTP/2 alike. */
type Res = { setHeader(name: string, value: string): unknown; writeHead(status: number, headers?: Record<string, string>): unknown; end(body: string | Buffer): unknown };

/**
 * The HTTP port: every service of this process over Connect (JSON and binary), gRPC-Web and gRPC
 * (HTTP/1.1 and HTTP/2, plaintext or TLS), `/healthz` (200 when the store answers within pingMs,
 * 503 with the reason otherwise, never waiting on the connection pool) and Prometheus `/metrics`.
 * Every answer carries SECURITY_HEADERS; CORS headers only for a listed Origin; in open mode a
 * request for a Host that is not loopback is refused with 403.
 */
export async function startHttp(opts: HttpOptions): Promise<{ port: number; close(): Promise<void> }> {
  const connect = opts.routes
    ? connectNodeAdapter({
        routes: opts.routes,
        contextValues: connectContextValues,
        shutdownSignal: opts.shutdown,
        readMaxBytes: MAX_MESSAGE_BYTES,
        writeMaxBytes: MAX_MESSAGE_BYTES,
        // Connect ignores unknown JSON keys and enum names by default, so a misspelt field or a
        // filter like {"status":"BANNED"} (not ACCOUNT_STATUS_BANNED) was dropped and the call
        // answered as if unfiltered. Refused instead, naming the key or the value.
        jsonOptions: { ignoreUnknownFields: false },
        fallback: (_req, res) => send(res, 404, "text/plain", "not found: try /healthz, /metrics or /<package.Service>/<Method>\n"),
      })
    : undefined;
  const statuses = () => Object.fromEntries(opts.services.map((s) => [s.name, s.implemented ? "SERVING" : "NOT_SERVING"]));
  const serve = (req: Req, res: Res, path: string) => {
    if (opts.console && (req.method === "GET" || req.method === "HEAD") && path !== "/healthz" && path !== "/metrics" && !isRpcPath(path)) {
      return serveConsole(req, res, path, opts.console);
    }
    if (path === "/healthz" || path === "/metrics" || !connect) {
      if (req.method !== "GET") return send(res, 405, "text/plain", "only GET\n");
      if (path === "/healthz") {
        void opts.db.ping(opts.pingMs).then((h) =>
          h.ok
            ? send(res, 200, "application/json", JSON.stringify({ status: "SERVING", store: "ok", services: statuses() }) + "\n")
            : send(res, 503, "application/json", JSON.stringify({ status: "NOT_SERVING", store: h.reason, services: statuses() }) + "\n"),
        );
        return;
      }
      if (path === "/metrics") {
        opts.metrics.registry.metrics().then((body) => send(res, 200, opts.metrics.registry.contentType, body), () => send(res, 500, "text/plain", "metrics failed\n"));
        return;
      }
      return send(res, 404, "text/plain", "not found: try /healthz or /metrics\n");
    }
    connect(req, res as ServerResponse);
  };
  const handler = (req: Req, res: Res) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    // mTLS: the handshake asks for a certificate without demanding one, so that /healthz answers a
    // load balancer without one; everything else needs a certificate the client CA signed.
    if (opts.tls?.clientCa && path !== "/healthz" && !clientCertified(req)) {
      return refuseUnauthenticated(req, res, "a client certificate signed by the server's CONVEER_TLS_CLIENT_CA is required (the CLI: --cert/--key or CONVEER_CLIENT_CERT/CONVEER_CLIENT_KEY)");
    }
    void guard(req, res, opts).then(
      (ok) => ok && serve(req, res, path),
      () => send(res, 503, "text/plain", "the server cannot decide whether this request may be served; retry later\n"),
    );
  };
  const server = listener(opts.tls, handler);
  const { host, port } = splitHostPort(opts.addr);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`cannot listen on ${opts.addr} (CONVEER_HTTP_ADDR): ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.destroyAll();
      }),
  };
}

/**
 * The checks before anything is served: the Host (open mode: loopback names only, so a page on a
 * rebound DNS name cannot reach an open local server) and CORS (headers only for a listed Origin;
 * a listed Origin's preflight is answered here). False when it answered the request itself.
 */
async function guard(req: Req, res: Res, opts: HttpOptions): Promise<boolean> {
  const hostHeader = req.headers[":authority"] ?? req.headers.host;
  const host = typeof hostHeader === "string" ? hostHeader : "";
  if (!isLoopbackHost(host) && (await opts.isOpen())) {
    send(res, 403, "text/plain", "this server takes calls without a token, so it answers only requests for a loopback host (localhost, 127.0.0.1, [::1]); create a token to serve other names\n");
    return false;
  }
  const origin = req.headers.origin;
  if (typeof origin !== "string" || !opts.corsOrigins.includes(origin)) return true;
  res.setHeader("access-control-allow-origin", origin);
  res.setHeader("vary", "Origin");
  if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
    res.setHeader("access-control-allow-methods", cors.allowedMethods.join(", "));
    res.setHeader("access-control-allow-headers", CORS_ALLOWED_HEADERS);
    res.setHeader("access-control-max-age", "7200");
    res.writeHead(204);
    res.end("");
    return false;
  }
  res.setHeader("access-control-expose-headers", cors.exposedHeaders.join(", "));
  return true;
}

/** True when the request came over TLS with a client certificate the server's client CA verified. */
function clientCertified(req: Req): boolean {
  const socket = ("stream" in req ? req.stream.session?.socket : req.socket) as TLSSocket | undefined;
  return socket?.authorized === true;
}

/** A Host header's name is loopback: localhost, 127.x.x.x or [::1], with any port. */
export function isLoopbackHost(hostHeader: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d{1,5})?$/.exec(hostHeader.trim().toLowerCase());
  if (!m) return false;
  const name = m[1].replace(/\.$/, "");
  return name === "[::1]" || isLoopback(name);
}

type Listener = { listen(port: number, host: string, cb: () => void): void; once(e: "error", cb: (err: Error) => void): void; address(): AddressInfo | string | null; close(cb: () => void): void; destroyAll(): void };

/**
 * One port for HTTP/1.1 (curl, browsers, Connect and gRPC-Web) and HTTP/2 (gRPC, Connect). With
 * TLS, ALPN picks; in plaintext, a connection opening with the HTTP/2 preface ("PRI ") goes to the
 * HTTP/2 server (prior knowledge, as gRPC clients speak it), any other to the HTTP/1.1 one.
 */
function listener(tls: Tls, handler: (req: Req, res: Res) => void): Listener {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  };
  const destroyAll = () => {
    for (const s of sockets) s.destroy();
  };
  if (tls) {
    // With a client CA, a certificate is requested and verified, but its absence is answered per
    // request (401 everywhere but /healthz, see startHttp) rather than by a failed handshake.
    const mtls = tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {};
    const server = createSecureServer({ cert: tls.cert, key: tls.key, allowHTTP1: true, ...mtls }, handler);
    server.on("connection", track);
    return Object.assign(server, { destroyAll });
  }
  const h1 = createHttpServer(handler);
  const h2 = createHttp2Server({}, handler);
  const server = createNetServer((socket) => {
    track(socket);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4 && HTTP2_PREFACE.startsWith(head.toString("latin1"))) return;
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      if (head.toString("latin1", 0, 4) === HTTP2_PREFACE) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });
  return Object.assign(server, { destroyAll });
}

const HTTP2_PREFACE = "PRI ";

/**
 * UNAUTHENTICATED in the caller's protocol, so its client shows the message: gRPC and gRPC-Web
 * get grpc-status 16 in a trailers-only answer, Connect a 401 with its JSON error, the rest plain text.
 */
function refuseUnauthenticated(req: Req, res: Res, message: string): void {
  const type = String(req.headers["content-type"] ?? "");
  if (type.startsWith("application/grpc")) {
    res.writeHead(200, { "content-type": type.startsWith("application/grpc-web") ? "application/grpc-web+proto" : "application/grpc", "grpc-status": "16", "grpc-message": encodeURIComponent(message) });
    res.end("");
    return;
  }
  if (type.startsWith("application/json") || type.startsWith("application/proto") || type.startsWith("application/connect")) {
    return send(res, 401, "application/json", JSON.stringify({ code: "unauthenticated", message }));
  }
  send(res, 401, "text/plain", `${message}\n`);
}

/** A console file (or index.html for a client route) with the console's CSP; gzip when the browser takes it. */
function serveConsole(req: Req, res: Res, path: string, files: ConsoleFiles): void {
  if (!files.built) return send(res, 404, "text/plain", "the console is not built: run `npm run build:console` (npm ci does it through prepare)\n");
  const file = files.lookup(path);
  if (!file) return send(res, 404, "text/plain", "not found\n");
  res.setHeader("content-security-policy", CONSOLE_CSP);
  res.setHeader("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  res.setHeader("vary", "Accept-Encoding, Origin");
  const gzip = file.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  const body = gzip ? file.gzip! : file.body;
  res.writeHead(200, { "content-type": file.type, "content-length": String(body.length), ...(gzip ? { "content-encoding": "gzip" } : {}) });
  res.end(req.method === "HEAD" ? "" : body);
}

function send(res: Res, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type });
  res.end(body);
}
