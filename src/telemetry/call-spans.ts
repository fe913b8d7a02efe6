/**
 * Spans for RPCs, on every side of a hop: the server chain (gRPC ports and the HTTP port's Connect,
 * gRPC-Web and gRPC), outgoing clients (peers in other processes, the CLI) and in-process peer
 * calls. The caller's W3C traceparent is the server span's parent, and a client puts its own span's
 * traceparent on the wire, so one external call is one trace across every process it reaches.
 * Names and attributes follow OpenTelemetry's RPC conventions ("conveer.AccountService/GetAccount").
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Interceptor } from "@connectrpc/connect";
import type { ServerInterceptor } from "../server/interceptor.ts";
import { CLIENT, INTERNAL, SERVER, SpanStatusCode, context, extractFrom, failSpan, injectInto, inSpan, trace, tracer } from "./tracing.ts";
import type { Span } from "./tracing.ts";

/** gRPC codes a server counts as its own failure (OpenTelemetry's RPC conventions); the rest are the caller's. */
const SERVER_FAULTS = new Set([2, 4, 12, 13, 14, 15]);

/** rpc.system of a ServerCall's protocol. */
const systemOf = (protocol: string) => (protocol === "grpc" ? "grpc" : "connect_rpc");

/**
 * The server span of every call, outermost in the chain (so the call log's line carries its ids):
 * parented on the caller's traceparent, active while the handler runs, ended with the call's status.
 */
export const traceCalls: ServerInterceptor = (next) => (call) => {
  const { service, method } = call.route;
  const parent = extractFrom(call.requestHeader());
  const span = tracer.startSpan(
    `${service.typeName}/${method.name}`,
    { kind: SERVER, attributes: { "rpc.system": systemOf(call.protocol), "rpc.service": service.typeName, "rpc.method": method.name } },
    parent,
  );
  return context.with(trace.setSpan(parent, span), async () => {
    try {
      return await next(call);
    } finally {
      const code = call.status?.code ?? 0;
      span.setAttribute("rpc.grpc.status_code", code);
      if (SERVER_FAULTS.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: call.status!.message.slice(0, 256) });
      span.end();
    }
  });
};

/**
 * A Connect client interceptor: a CLIENT span per outgoing call, its traceparent sent in the
 * request headers (gRPC metadata or Connect headers alike). `system` is the protocol spoken.
 */
export function traceOutgoing(system: "grpc" | "connect_rpc", serverAddress: string): Interceptor {
  return (next) => async (req) => {
    const parent = context.active();
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: CLIENT, attributes: { "rpc.system": system, "rpc.service": req.service.typeName, "rpc.method": req.method.name, "server.address": serverAddress } },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    injectInto(req.header, ctx);
    let res;
    try {
      res = await context.with(ctx, () => next(req));
    } catch (err) {
      endFailed(span, err);
      throw err;
    }
    // A stream's span lasts until its last message (or its error), not just its headers.
    if (res.stream) return { ...res, message: endAfter(res.message, span) };
    span.setAttribute("rpc.grpc.status_code", 0);
    span.end();
    return res;
  };
}

function endFailed(span: Span, err: unknown): void {
  span.setAttribute("rpc.grpc.status_code", err instanceof ConnectError ? err.code : Code.Unknown);
  failSpan(span, err);
  span.end();
}

async function* endAfter<T>(messages: AsyncIterable<T>, span: Span): AsyncGenerator<T> {
  try {
    yield* messages;
    span.setAttribute("rpc.grpc.status_code", 0);
    span.end();
  } catch (err) {
    endFailed(span, err);
    throw err;
  } finally {
    // The caller stopped reading early (break/return): the span ends there.
    if (span.isRecording()) span.end();
  }
}

/**
 * An in-process peer call: no wire, so no traceparent to carry; the span is a child of the active
 * one and stays active inside the peer's handler, which keeps the caller's trace.
 */
export function traceLocal<T>(serviceName: string, methodName: string, fn: () => Promise<T>): Promise<T> {
  return inSpan(`${serviceName}/${methodName}`, { kind: INTERNAL, attributes: { "rpc.system": "conveer_local", "rpc.service": serviceName, "rpc.method": methodName } }, fn);
}
