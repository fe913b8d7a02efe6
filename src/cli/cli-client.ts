import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Config, ServiceName } from "../config/config.ts";
import { remoteClient, tlsFiles } from "../server/clients.ts";
import { traceOutgoing } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";

/**
 * The client a CLI command calls a service through: with a server URL (`--server` /
 * CONVEER_SERVER) the Connect protocol to the HTTP port, which serves every service; otherwise
 * gRPC to the service's own `*_SERVICE_GRPC_ADDR` (over TLS when a CA, a client certificate or
 * CONVEER_TLS_CERT is configured). Either way the token goes as `Authorization: Bearer …`, a TLS
 * server is trusted through `--ca` / CONVEER_CA, and `--cert`/`--key` (CONVEER_CLIENT_CERT /
 * CONVEER_CLIENT_KEY) are presented to an mTLS server.
 */
export function cliClient<S extends DescService>(service: S, name: ServiceName, config: Config): Client<S> {
  if (!config.server) return remoteClient(service, { addr: config.addrs[name], token: config.token, tls: Boolean(config.tlsCert || config.caFile || config.clientCert), ...cliTlsFiles(config) });
  return serverClient(service, config.server, config);
}

function cliTlsFiles(config: Config) {
  return { caFile: config.caFile || undefined, certFile: config.clientCert || undefined, keyFile: config.clientKey || undefined };
}

/** A Connect client to a service on the HTTP port at `server` (e.g. http://127.0.0.1:8080), sending the token, trusting `caFile` and presenting the client certificate. */
export function serverClient<S extends DescService>(service: S, server: string, config: Config): Client<S> {
  const bearer: Interceptor = (next) => async (req) => {
    if (config.token) req.header.set("authorization", `Bearer ${config.token}`);
    return next(req);
  };
  const tls = tlsFiles(cliTlsFiles(config));
  const transport = createConnectTransport({
    baseUrl: server,
    httpVersion: "1.1",
    interceptors: tracingEnabled() ? [traceOutgoing("connect_rpc", new URL(server).host), bearer] : [bearer],
    nodeOptions: Object.keys(tls).length > 0 ? tls : undefined,
  });
  return createClient(service, transport);
}

/** The CLI's global options that override the environment. */
export type CliOptions = { server?: string; ca?: string; cert?: string; key?: string };

/** The configuration with the CLI's global `--server`, `--ca`, `--cert` and `--key` applied over the environment's. */
export function withCliOptions(config: Config, o: CliOptions): Config {
  if (!o.server && !o.ca && !o.cert && !o.key) return config;
  if (Boolean(o.cert ?? config.clientCert) !== Boolean(o.key ?? config.clientKey)) throw new Error("--cert and --key go together (the client certificate and its private key, PEM files); give both or neither");
  return Object.freeze({
    ...config,
    server: (o.server ?? config.server).replace(/\/+$/, ""),
    caFile: o.ca ?? config.caFile,
    clientCert: o.cert ?? config.clientCert,
    clientKey: o.key ?? config.clientKey,
  });
}
