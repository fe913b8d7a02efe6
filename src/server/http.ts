import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Db } from "../store/db.ts";
import { splitHostPort } from "../config/config.ts";
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
};

/**
 * The HTTP port: `/healthz` (200 when the store answers within pingMs, 503 with the reason
 * otherwise, never waiting on the connection pool) and Prometheus `/metrics`.
 */
export async function startHttp(opts: HttpOptions): Promise<{ port: number; close(): Promise<void> }> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method !== "GET") return send(res, 405, "text/plain", "only GET\n");
    if (url.pathname === "/healthz") {
      void opts.db.ping(opts.pingMs).then((h) =>
        h.ok
          ? send(res, 200, "application/json", JSON.stringify({ status: "SERVING", store: "ok", services: statuses() }) + "\n")
          : send(res, 503, "application/json", JSON.stringify({ status: "NOT_SERVING", store: h.reason, services: statuses() }) + "\n"),
      );
      return;
    }
    if (url.pathname === "/metrics") {
      opts.metrics.registry.metrics().then((body) => send(res, 200, opts.metrics.registry.contentType, body), () => send(res, 500, "text/plain", "metrics failed\n"));
      return;
    }
    send(res, 404, "text/plain", "not found: try /healthz or /metrics\n");
  };
  const statuses = () => Object.fromEntries(opts.services.map((s) => [s.name, s.implemented ? "SERVING" : "NOT_SERVING"]));
  const server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
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
        server.closeAllConnections();
      }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type });
  res.end(body);
}
