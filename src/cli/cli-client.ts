import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Config, ServiceName } from "../config/config.ts";
import { remoteClient } from "../server/clients.ts";
import { traceOutgoing } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";

/**
 * The client a CLI command calls a service through: with a server URL (`--server` /
 * CONVEER_SERVER) the Connect protocol to the HTTP port, which serves every service; otherwise
 * gRPC to the service's own `*_SERVICE_GRPC_ADDR`. Either way the token goes as `Authorization:
 * Bearer …`, and a TLS server is trusted through `--ca` / CONVEER_CA.
 */
export function cliClient<S extends DescService>(service: S, name: ServiceName, config: Config): Client<S> {
  if (!config.server) return remoteClient(service, { addr: config.addrs[name], token: config.token, tls: Boolean(config.tlsCert), caFile: config.caFile || undefined });
  const bearer: Interceptor = (next) => async (req) => {
    if (config.token) req.header.set("authorization", `Bearer ${config.token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: config.server,
    httpVersion: "1.1",
    interceptors: tracingEnabled() ? [traceOutgoing("connect_rpc", new URL(config.server).host), bearer] : [bearer],
    nodeOptions: config.caFile ? { ca: readFileSync(config.caFile) } : undefined,
  });
  return createClient(service, transport);
}

/** The configuration with the CLI's global `--server` and `--ca` applied over the environment's. */
export function withCliOptions(config: Config, o: { server?: string; ca?: string }): Config {
  if (!o.server && !o.ca) return config;
  return Object.freeze({ ...config, server: (o.server ?? config.server).replace(/\/+$/, ""), caFile: o.ca ?? config.caFile });
}
