import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import { applyInterceptors, routesOf } from "./interceptor.ts";
import type { CallHandler, Route, ServerCall } from "./interceptor.ts";
import { CLIENT_CANCELLED, authorize, callDeadline, callLog, decodeRequest, recovery } from "./interceptors.ts";
import type { Metrics } from "./metrics.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { traceCalls } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";
import { statusDetailsBin } from "./status.ts";
import type { StatusOut } from "./status.ts";

/** The seed's clients send and accept messages up to 10 MB. */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/** Shared pieces every port's handlers use. */
export type CallDeps = { log: Logger; auth: Authenticator; metrics: Metrics; shutdown: AbortSignal };

/**
 * Builds a grpc-js service definition and handlers from a protobuf-es descriptor. Requests are
 * decoded inside the handler (not by grpc-js), so a malformed body answers INVALID_ARGUMENT.
 * Every call passes the interceptors (src/server/interceptors.ts), composed once here: call log +
 * metrics, recovery (any throw → a status, the process lives on), the call's deadline, auth
 * (token → principal → scope check), and decode + request check; a method with no implementation
 * bound answers UNIMPLEMENTED after the first two.
 */
export function grpcServiceOf(binding: ServiceBinding | { service: DescService; impl?: undefined }, deps: CallDeps) {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  // The server span outermost (when a tracer provider is registered), so the call log's line carries its ids.
  const observed = [...(tracingEnabled() ? [traceCalls] : []), callLog(deps.log, deps.metrics), recovery];
  const guarded = [...observed, callDeadline, authorize(deps.auth), decodeRequest(deps.shutdown)];
  const unary = applyInterceptors(answerUnary, guarded);
  const stream = applyInterceptors(answerStream, guarded);
  const unimplemented = applyInterceptors(refuseUnimplemented, observed);
  for (const route of routesOf(binding)) {
    const { method } = route;
    definition[method.localName] = {
      path: route.path,
      requestStream: false,
      responseStream: route.streaming,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
      originalName: method.localName,
    } as grpc.MethodDefinition<Buffer, Buffer>;
    const chain = route.fn ? (route.streaming ? stream : unary) : unimplemented;
    handlers[method.localName] = route.streaming
      ? (call: grpc.ServerWritableStream<Buffer, Buffer>) => void serveStream(chain, new GrpcCall(route, call))
      : (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => void serveUnary(chain, new GrpcCall(route, call), callback);
  }
  return { definition: definition as grpc.ServiceDefinition, handlers };
}

type RawCall = grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer>;

/** A grpc-js call as a ServerCall. */
class GrpcCall implements ServerCall {
  readonly route: Route;
  readonly raw: RawCall;
  readonly protocol = "grpc";
  readonly body: Uint8Array;
  readonly deadline: number | undefined;
  readonly cancel = new AbortController();
  /** Set once the answer is sent: grpc-js also reports "cancelled" after a normal answer, and only a cancel before it counts. */
  answered = false;
  principal: Principal | undefined = undefined;
  request: unknown = undefined;
  context: ServerCall["context"] = undefined;
  status: StatusOut | undefined = undefined;
  error: unknown = undefined;
  response: unknown = undefined;

  constructor(route: Route, raw: RawCall) {
    this.route = route;
    this.raw = raw;
    this.body = raw.request;
    this.deadline = deadlineOf(raw);
    raw.on("cancelled", () => this.answered || this.cancel.abort(CLIENT_CANCELLED));
  }

  get signal(): AbortSignal {
    return this.cancel.signal;
  }

  peer(): string {
    return this.raw.getPeer();
  }

  authorization(): string | undefined {
    const auth = this.raw.metadata.get("authorization")[0];
    return typeof auth === "string" ? auth : undefined;
  }

  requestHeader(): Headers {
    const header = new Headers();
    for (const [k, v] of Object.entries(this.raw.metadata.getMap())) {
      if (typeof v === "string" && k !== "authorization") header.set(k, v);
    }
    return header;
  }
}

/** A status as grpc-js sends it: code, message, and the google.rpc details in grpc-status-details-bin. */
function grpcError(s: StatusOut): Partial<grpc.StatusObject> {
  const bin = statusDetailsBin(s);
  if (!bin) return { code: s.code, details: s.message };
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", bin);
  return { code: s.code, details: s.message, metadata };
}

/** The unary adapter: runs the chain, then answers with its bytes or recovery's status. */
async function serveUnary(chain: CallHandler<GrpcCall>, call: GrpcCall, callback: grpc.sendUnaryData<Buffer>): Promise<void> {
  const out = (await chain(call)) as Buffer;
  call.answered = true;
  if (call.status) callback(grpcError(call.status));
  else callback(null, out);
}

/** The streaming adapter: runs the chain (which writes the messages), then ends the stream or fails it with recovery's status. */
async function serveStream(chain: CallHandler<GrpcCall>, call: GrpcCall): Promise<void> {
  await chain(call);
  call.answered = true;
  if (call.status) call.raw.emit("error", grpcError(call.status));
  else (call.raw as grpc.ServerWritableStream<Buffer, Buffer>).end();
}

/** The innermost unary handler: the implementation's answer, encoded. */
async function answerUnary(call: GrpcCall): Promise<Buffer> {
  const { output } = call.route.method;
  const out = await call.route.fn!(call.request, call.context!);
  call.response = out;
  return Buffer.from(toBinary(output, create(output, out as never)));
}

/** The innermost streaming handler: writes each message the implementation yields, honouring backpressure. */
async function answerStream(call: GrpcCall): Promise<void> {
  const raw = call.raw as grpc.ServerWritableStream<Buffer, Buffer>;
  const { output } = call.route.method;
  for await (const m of call.route.fn!(call.request, call.context!) as AsyncIterable<unknown>) {
    if (call.signal.aborted) break;
    if (!raw.write(encodeShared(output, m))) await drained(raw, call.signal);
  }
}

async function refuseUnimplemented(call: ServerCall): Promise<never> {
  throw new AppError("UNIMPLEMENTED", `${call.route.label} has no implementation bound on this server`);
}

/**
 * A streamed message's bytes. A frozen message is encoded once for every call it goes to: a
 * stream that fans one message out to many calls (StreamEvents hands every subscriber the same
 * frozen event) pays for the encoding once, not once per subscriber. Only frozen ones, so a
 * stream that yields one object again with new contents is never sent stale bytes.
 */
const encoded = new WeakMap<object, Buffer>();
function encodeShared(desc: DescMessage, m: unknown): Buffer {
  const shared = typeof m === "object" && m !== null && Object.isFrozen(m);
  let buf = shared ? encoded.get(m) : undefined;
  if (!buf) {
    buf = Buffer.from(toBinary(desc, create(desc, m as never)));
    if (shared) encoded.set(m, buf);
  }
  return buf;
}

/** Resolves when the stream can take more, or the call is aborted; leaves no listener behind. */
function drained(call: grpc.ServerWritableStream<Buffer, Buffer>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The call's deadline as epoch ms, or undefined when it has none. */
function deadlineOf(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : Number(d);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Server options shared by every port: 10 MB messages, keepalive suited to long streams. */
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};
