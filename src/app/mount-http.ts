import { connectRoutesOf } from "../server/connect-adapter.ts";
import { loadConsoleFiles } from "../server/console-files.ts";
import { startHttp } from "../server/http.ts";
import type { Tls } from "../server/listen.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";
import { DESCRIPTORS } from "./descriptors.ts";
import { HEALTH_PING_MS } from "./mount-grpc.ts";

/**
 * The HTTP port: every service this process serves over Connect, gRPC-Web and gRPC (the same
 * bindings and interceptors as the gRPC ports), the services served on this port only
 * (`httpOnly`: AdminService), /healthz and /metrics; closed first on stop. Answers its bound port.
 */
export async function mountHttp(ctx: AppContext, tls: Tls, httpOnly: readonly ServiceBinding[] = []): Promise<number> {
  const services = ctx.services.map((s) => ({ name: DESCRIPTORS[s].typeName, implemented: Boolean(ctx.bindings[s]) }));
  const deps = { log: ctx.log, auth: ctx.auth, metrics: ctx.metrics, shutdown: ctx.shutdown.signal };
  const routes = connectRoutesOf([...ctx.services.map((s) => ctx.bindings[s] ?? { service: DESCRIPTORS[s] }), ...httpOnly], deps);
  const http = await startHttp({
    addr: ctx.config.httpAddr,
    tls,
    metrics: ctx.metrics,
    db: ctx.db,
    pingMs: HEALTH_PING_MS,
    services,
    routes,
    corsOrigins: ctx.config.httpCorsOrigins,
    isOpen: () => ctx.auth.isOpen(),
    shutdown: ctx.shutdown.signal,
    console: loadConsoleFiles(),
  });
  ctx.releasers.add("http", () => http.close());
  return http.port;
}
