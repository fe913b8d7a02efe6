import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { SERVICE_PORTS } from "../config/config.ts";
import type { ServiceName } from "../config/config.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../server/grpc-server.ts";
import { bindGrpc, serverCredentials } from "../server/listen.ts";
import type { Tls } from "../server/listen.ts";
import { createReflection, loadReflectionDescriptors } from "../server/reflection.ts";
import type { AppContext } from "./app-context.ts";
import { DESCRIPTORS } from "./descriptors.ts";

/**
 * How long a health answer waits for the store: /healthz must answer within a second, and a loaded
 * machine spent 106 ms around a 900 ms wait (CI at load average 8) and 306 ms around a 750 ms one
 * (a slower host, the process under load); 500 leaves half the second for that. A store that takes
 * half a second to answer `SELECT 1` on its own connection is not serving anyway.
 */
export const HEALTH_PING_MS = 500;

/**
 * One gRPC port per service this process serves, each with its own health (its service, and ""
 * for the store, probed every second; any other service is NOT_FOUND there) and reflection
 * listing only that service (plus health and reflection); drained on stop. Answers the bound ports.
 */
export async function mountGrpc(ctx: AppContext, tls: Tls): Promise<Partial<Record<ServiceName, number>>> {
  const { config, bindings } = ctx;
  const deps = { log: ctx.log, auth: ctx.auth, metrics: ctx.metrics, shutdown: ctx.shutdown.signal };
  const descriptors = loadReflectionDescriptors();
  const healths: HealthImplementation[] = [];
  const creds = serverCredentials(tls);
  const ports: Partial<Record<ServiceName, number>> = {};
  const servers: grpc.Server[] = [];
  ctx.releasers.add("grpc", (graceMs) => drain(servers, ctx.shutdown, graceMs));
  for (const name of ctx.services) {
    const binding = bindings[name] ?? { service: DESCRIPTORS[name] };
    const typeName = DESCRIPTORS[name].typeName;
    const health = new HealthImplementation({ "": "SERVING", [typeName]: bindings[name] ? "SERVING" : "NOT_SERVING" });
    healths.push(health);
    const server = new grpc.Server(GRPC_SERVER_OPTIONS);
    const { definition, handlers } = grpcServiceOf(binding, deps);
    server.addService(definition, handlers);
    health.addToServer(server);
    createReflection([typeName], descriptors).addToServer(server);
    ports[name] = await bindGrpc(server, config.addrs[name], creds, SERVICE_PORTS[name].env);
    servers.push(server);
  }
  probeStore(ctx, healths);
  return ports;
}

/**
 * Reports the store's health ("") every second, only when it changes (Health Watch streams every
 * setStatus to its watchers). The probe also keeps the store's own monitor current, so a store
 * that went silent (no reset, no error) is noticed within a probe period and calls then fail fast.
 */
function probeStore(ctx: AppContext, healths: HealthImplementation[]): void {
  let storeStatus: "SERVING" | "NOT_SERVING" = "SERVING";
  const report = (s: typeof storeStatus) => {
    if (s === storeStatus) return;
    storeStatus = s;
    for (const health of healths) health.setStatus("", s);
  };
  const probe = setInterval(() => {
    void ctx.db.ping(HEALTH_PING_MS).then((h) => report(h.ok ? "SERVING" : "NOT_SERVING"));
  }, 1000);
  probe.unref();
  ctx.releasers.add("store-probe", async () => clearInterval(probe));
}

/** Stops accepting calls, lets in-flight ones finish for up to graceMs, then cuts the rest. */
async function drain(servers: grpc.Server[], shutdown: AbortController, graceMs: number): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            shutdown.abort();
            s.forceShutdown();
            resolve();
          }, graceMs);
          s.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
  shutdown.abort();
}
