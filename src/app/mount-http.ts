import { startHttp } from "../server/http.ts";
import type { Tls } from "../server/listen.ts";
import type { AppContext } from "./app-context.ts";
import { DESCRIPTORS } from "./descriptors.ts";
import { HEALTH_PING_MS } from "./mount-grpc.ts";

/** The HTTP port (/healthz, /metrics), closed first on stop. Answers its bound port. */
export async function mountHttp(ctx: AppContext, tls: Tls): Promise<number> {
  const services = ctx.services.map((s) => ({ name: DESCRIPTORS[s].typeName, implemented: Boolean(ctx.bindings[s]) }));
  const http = await startHttp({ addr: ctx.config.httpAddr, tls, metrics: ctx.metrics, db: ctx.db, pingMs: HEALTH_PING_MS, services });
  ctx.releasers.add("http", () => http.close());
  return http.port;
}
