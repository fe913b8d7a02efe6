import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext } from "@connectrpc/connect";
import type { HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import type { Metrics } from "./metrics.ts";
import { peerKey, principalKey } from "./service-binding.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { statusName, toStatus } from "./status.ts";

/** The seed's clients send and accept messages up to 10 MB. */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/** Shared pieces every port's handlers use. */
export type CallDeps = { log: Logger; auth: Authenticator; metrics: Metrics; shutdown: AbortSignal };

type UntypedImpl = Record<string, (req: unknown, ctx: HandlerContext) => unknown>;

/**
 * Builds a grpc-js service definition and handlers from a protobuf-es descriptor. Requests are
 * decoded inside the handler (not by grpc-js), so a malformed body answers INVALID_ARGUMENT.
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
      if (!fn) throw new AppError("UNIMPLEMENTED", `${binding.service.typeName}.${method.name} is not implemented yet in this version of Conveer`);
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
      const ctx = contextFor(binding.service, method, call, signal, deps.shutdown);
      ctx.values.set(principalKey, principal);
      ctx.values.set(peerKey, call.getPeer());
      return { req, ctx, principal };
    };
    const finish = (call: { getPeer(): string }, started: number, err: unknown, principal?: string) => {
      const s = err === undefined ? { code: grpc.status.OK, message: "", internal: false } : toStatus(err);
      const durationMs = performance.now() - started;
      deps.metrics.observeCall(binding.service.typeName, method.name, statusName(s.code), durationMs / 1000);
      const entry = { method: path, peer: call.getPeer(), duration_ms: Math.round(durationMs * 100) / 100, code: statusName(s.code), token: principal };
      if (s.internal) deps.log.error({ ...entry, err }, "call failed with an internal error");
      else deps.log.info(entry, "call");
      return s;
    };

    if (!streaming) {
      handlers[method.localName] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const started = performance.now();
        const ac = new AbortController();
        call.on("cancelled", () => ac.abort(new AppError("CANCELLED", "the client cancelled the call")));
        let who: string | undefined;
        (async () => {
          const { req, ctx, principal } = await prepare(call, ac.signal);
          who = principal.name;
          const out = await fn!(req, ctx);
          return Buffer.from(toBinary(method.output, create(method.output, out as never)));
        })().then(
          (buf) => {
            finish(call, started, undefined, who);
            callback(null, buf);
          },
          (err: unknown) => {
            const s = finish(call, started, err, who);
            callback({ code: s.code, details: s.message });
          },
        );
      };
    } else {
      handlers[method.localName] = (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const started = performance.now();
        const ac = new AbortController();
        call.on("cancelled", () => ac.abort(new AppError("CANCELLED", "the client cancelled the call")));
        let who: string | undefined;
        (async () => {
          const { req, ctx, principal } = await prepare(call, ac.signal);
          who = principal.name;
          const it = fn!(req, ctx) as AsyncIterable<unknown>;
          for await (const m of it) {
            if (ac.signal.aborted) break;
            const ok = call.write(Buffer.from(toBinary(method.output, create(method.output, m as never))));
            if (!ok) await new Promise<void>((r) => { call.once("drain", r); ac.signal.addEventListener("abort", () => r(), { once: true }); });
          }
        })().then(
          () => {
            finish(call, started, undefined, who);
            call.end();
          },
          (err: unknown) => {
            const s = finish(call, started, ac.signal.aborted ? new AppError("CANCELLED", "cancelled") : err, who);
            call.emit("error", { code: s.code, details: s.message });
          },
        );
      };
    }
  }
  return { definition: definition as grpc.ServiceDefinition, handlers };
}

function contextFor(service: DescService, method: DescMethod, call: grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer>, signal: AbortSignal, shutdown: AbortSignal): HandlerContext {
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
