import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext } from "@connectrpc/connect";
import type { HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import type { Metrics } from "./metrics.ts";
import { checkRequest } from "./request-check.ts";
import { CALL_FINISHED, peerKey, principalKey } from "./service-binding.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { statusName, toStatus } from "./status.ts";
import { withCallDeadline } from "../store/call-deadline.ts";

/** The seed's clients send and accept messages up to 10 MB. */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/** Shared pieces every port's handlers use. */
export type CallDeps = { log: Logger; auth: Authenticator; metrics: Metrics; shutdown: AbortSignal };

/** A handler context that can be ended (abort): what createHandlerContext returns. */
type ContextController = ReturnType<typeof createHandlerContext>;

type UntypedImpl = Record<string, (req: unknown, ctx: HandlerContext) => unknown>;

/**
 * Builds a grpc-js service definition and handlers from a protobuf-es descriptor. Requests are
 * decoded inside the handler (not by grpc-js), so a malformed body answers INVALID_ARGUMENT, and
 * then pass checkRequest (string lengths, NUL, time ranges) before the handler sees them.
 * Every call passes the interceptors: logging + metrics, recovery (any throw → a status, the
 * process lives on), and auth (token → principal → scope check).
 */
export function grpcServiceOf(binding: ServiceBinding | { service: DescService; impl?: undefined }, deps: CallDeps) {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const impl = binding.impl as unknown as UntypedImpl | undefined;
  const scopes = (binding as ServiceBinding).scopes as Record<string, string> | undefined;
  for (const method of binding.service.methods) {
    const path = `/${binding.service.typeName}/${method.name}`;
    const streaming = method.methodKind === "server_streaming";
    definition[method.localName] = {
      path,
      requestStream: false,
      responseStream: streaming,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
      originalName: method.localName,
    } as grpc.MethodDefinition<Buffer, Buffer>;
    const fn = impl?.[method.localName];
    const scope = scopes?.[method.localName];
    const prepare = async (call: grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer>, signal: AbortSignal) => {
      if (!fn) throw new AppError("UNIMPLEMENTED", `${binding.service.typeName}.${method.name} has no implementation bound on this server`);
      const auth = call.metadata.get("authorization")[0];
      const principal = await deps.auth.authenticate(typeof auth === "string" ? auth : undefined);
      if (!scope) throw new AppError("PERMISSION_DENIED", `no scope is declared for ${method.name}`);
      deps.auth.authorize(principal, scope, `${binding.service.typeName}.${method.name}`);
      let req: unknown;
      try {
        req = fromBinary(method.input, call.request);
      } catch (err) {
        throw new AppError("INVALID_ARGUMENT", `request body is not a valid ${method.input.typeName} message: ${(err as Error).message}`);
      }
      checkRequest(method.input, req as object);
      const ctx = contextFor(binding.service, method, call, signal, deps.shutdown);
      ctx.values.set(principalKey, principal);
      ctx.values.set(peerKey, call.getPeer());
      return { req, ctx, principal };
    };
    const finish = (call: { getPeer(): string }, started: number, err: unknown, principal?: string) => {
      const s = err === undefined ? { code: grpc.status.OK, message: "", internal: false } : toStatus(err);
      const durationMs = performance.now() - started;
      deps.metrics.observeCall(binding.service.typeName, method.name, statusName(s.code), durationMs / 1000);
      if (!s.internal && !deps.log.isLevelEnabled("info")) return s;
      const entry = { method: path, peer: call.getPeer(), duration_ms: Math.round(durationMs * 100) / 100, code: statusName(s.code), token: principal };
      if (s.internal) deps.log.error({ ...entry, err }, "call failed with an internal error");
      else deps.log.info(entry, "call");
      return s;
    };

    if (!streaming) {
      handlers[method.localName] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const started = performance.now();
        const ac = new AbortController();
        let answered = false;
        // grpc-js also reports "cancelled" after a normal answer: only a cancel before it counts.
        call.on("cancelled", () => answered || ac.abort(CLIENT_CANCELLED));
        let who: string | undefined;
        let context: ContextController | undefined;
        withCallDeadline(deadlineOf(call), async () => {
          const { req, ctx, principal } = await prepare(call, ac.signal);
          who = principal.name;
          context = ctx;
          const out = await fn!(req, ctx);
          return Buffer.from(toBinary(method.output, create(method.output, out as never)));
        }).then(
          (buf) => {
            answered = true;
            release(context);
            finish(call, started, undefined, who);
            callback(null, buf);
          },
          (err: unknown) => {
            answered = true;
            release(context);
            const s = finish(call, started, err, who);
            callback({ code: s.code, details: s.message });
          },
        );
      };
    } else {
      handlers[method.localName] = (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const started = performance.now();
        const ac = new AbortController();
        let answered = false;
        call.on("cancelled", () => answered || ac.abort(CLIENT_CANCELLED));
        let who: string | undefined;
        let context: ContextController | undefined;
        withCallDeadline(deadlineOf(call), async () => {
          const { req, ctx, principal } = await prepare(call, ac.signal);
          who = principal.name;
          context = ctx;
          const it = fn!(req, ctx) as AsyncIterable<unknown>;
          for await (const m of it) {
            if (ac.signal.aborted) break;
            const ok = call.write(encodeShared(method.output, m));
            if (!ok) await drained(call, ac.signal);
          }
        }).then(
          () => {
            answered = true;
            release(context);
            finish(call, started, undefined, who);
            call.end();
          },
          (err: unknown) => {
            answered = true;
            release(context);
            const s = finish(call, started, ac.signal.aborted ? CLIENT_CANCELLED : err, who);
            call.emit("error", { code: s.code, details: s.message });
          },
        );
      };
    }
  }
  return { definition: definition as grpc.ServiceDefinition, handlers };
}

/**
 * Ends a call's handler context once the call is answered: clears its deadline timer (without this,
 * every call with a deadline left a live timer, holding the context, until the deadline passed, and
 * kept a stopping process alive that long) and unlinks it from the process-wide shutdown signal.
 */
function release(ctx: ContextController | undefined): void {
  ctx?.abort(CALL_FINISHED);
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

// Built once, like CALL_FINISHED.
const CLIENT_CANCELLED = new AppError("CANCELLED", "the client cancelled the call");

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

function contextFor(service: DescService, method: DescMethod, call: grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer>, signal: AbortSignal, shutdown: AbortSignal): ContextController {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() - Date.now() : Number.isFinite(deadline) ? Number(deadline) - Date.now() : undefined;
  const header = new Headers();
  for (const [k, v] of Object.entries(call.metadata.getMap())) {
    if (typeof v === "string" && k !== "authorization") header.set(k, v);
  }
  return createHandlerContext({
    service,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `/${service.typeName}/${method.name}`,
    timeoutMs: ms !== undefined && ms > 0 ? ms : undefined,
    requestSignal: signal,
    shutdownSignal: shutdown,
    requestHeader: header,
    contextValues: createContextValues(),
  });
}

/** Server options shared by every port: 10 MB messages, keepalive suited to long streams. */
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};
