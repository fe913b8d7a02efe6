import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { traceOutgoing } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";

/** How to reach a peer service over gRPC. */
export type RemoteOptions = {
  addr: string;
  token?: string;
  tls?: boolean;
  caFile?: string;
  /** A client certificate and its key (PEM files) for an mTLS server (CONVEER_CLIENT_CERT / CONVEER_CLIENT_KEY). */
  certFile?: string;
  keyFile?: string;
  /** Connections to close when the owner stops (tests, CLI); each client adds its session here. */
  sessions?: Http2SessionManager[];
};

/**
 * A typed gRPC client (Connect's client over HTTP/2, speaking the gRPC protocol) for a peer's
 * `*_SERVICE_GRPC_ADDR`, sending the bearer token when one is given. Used by the CLI, by tests,
 * and between services that run in different processes.
 */
export function remoteClient<S extends DescService>(service: S, opts: RemoteOptions): Client<S> {
  const bearer: Interceptor = (next) => async (req) => {
    if (opts.token) req.header.set("authorization", `Bearer ${opts.token}`);
    return next(req);
  };
  const baseUrl = `${opts.tls ? "https" : "http"}://${opts.addr}`;
  const nodeOptions = tlsFiles(opts);
  const sessionManager = new Http2SessionManager(baseUrl, undefined, nodeOptions);
  opts.sessions?.push(sessionManager);
  const transport = createGrpcTransport({
    baseUrl,
    // With a tracer provider registered: a client span per call, its traceparent in the metadata.
    interceptors: tracingEnabled() ? [traceOutgoing("grpc", opts.addr), bearer] : [bearer],
    readMaxBytes: 10 * 1024 * 1024,
    writeMaxBytes: 10 * 1024 * 1024,
    sessionManager,
  });
  return createClient(service, transport);
}

/** The TLS options of a client: the CA to trust and the client certificate to present, read from their PEM files. */
export function tlsFiles(o: { caFile?: string; certFile?: string; keyFile?: string }): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(o.caFile ? { ca: readFileSync(o.caFile) } : {}),
    ...(o.certFile ? { cert: readFileSync(o.certFile) } : {}),
    ...(o.keyFile ? { key: readFileSync(o.keyFile) } : {}),
  };
}
