import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { CallContext } from "./call-context.ts";
import type { Principal } from "../auth/tokens.ts";
import type { StatusOut } from "./status.ts";

/** One method as the interceptors see it, built once per method when a port is set up. */
export type Route = {
  readonly service: DescService;
  readonly method: DescMethod;
  /** "/conveer.AccountService/GetAccount": the call's path, its log and context URL. */
  readonly path: string;
  /** "conveer.AccountService.GetAccount": what an authorization failure names. */
  readonly label: string;
  readonly streaming: boolean;
  /** The scope the method needs; a method without one is refused. */
  readonly scope: string | undefined;
  /** The implementation; undefined when the service is not bound here (UNIMPLEMENTED). */
  readonly fn: ((req: unknown, ctx: HandlerContext) => unknown) | undefined;
};

/** Every method of a service binding (or a bare service, all unimplemented) as a Route; each transport mounts these. */
export function routesOf(binding: { service: DescService; impl?: unknown; scopes?: unknown }): Route[] {
  const impl = binding.impl as Record<string, Route["fn"]> | undefined;
  const scopes = binding.scopes as Record<string, string> | undefined;
  const { service } = binding;
  return service.methods.map((method) => ({
    service,
    method,
    path: `/${service.typeName}/${method.name}`,
    label: `${service.typeName}.${method.name}`,
    streaming: method.methodKind === "server_streaming",
    scope: scopes?.[method.localName],
    fn: impl?.[method.localName],
  }));
}

/**
 * One incoming call, whatever the transport: the transport fills the first fields, and the
 * interceptors the rest as the call passes them (auth → principal, decode → request and context,
 * recovery → status). One object per call, so the chain adds no closures.
 */
export type ServerCall = {
  readonly route: Route;
  /** The transport's protocol name for the handler context ("grpc", "connect", "grpcweb"). */
  readonly protocol: string;
  /** The request message's bytes (protobuf binary); undefined when the transport decoded it (Connect: JSON or binary) and set `request`. */
  readonly body: Uint8Array | undefined;
  /** The caller's deadline, epoch ms; undefined when it set none. */
  readonly deadline: number | undefined;
  /** Aborted when the client cancels the call. */
  readonly signal: AbortSignal;
  /** The caller's address ("ipv4:127.0.0.1:51000"). */
  peer(): string;
  /** The authorization header's value, if any. */
  authorization(): string | undefined;
  /** The request headers a handler may read (authorization left out). */
  requestHeader(): Headers;
  principal: Principal | undefined;
  request: unknown;
  context: CallContext | undefined;
  /** Set by recovery when the call failed: the status to answer with, and the error it came from. */
  status: StatusOut | undefined;
  error: unknown;
  /** The implementation's unary answer as a message (before encoding), for the call log's outcome. */
  response?: unknown;
};

/** Serves a call: answers the response (the transport's to send), or fails. */
export type CallHandler<C extends ServerCall = ServerCall> = (call: C) => Promise<unknown>;

/** A step every call passes (logging, recovery, auth, …): wraps the next handler (Connect-ES's Interceptor). */
export type ServerInterceptor = <C extends ServerCall>(next: CallHandler<C>) => CallHandler<C>;

/** The handler wrapped by the interceptors, the first one outermost. Done once per port, never per call. */
export function applyInterceptors<C extends ServerCall>(handler: CallHandler<C>, interceptors: readonly ServerInterceptor[]): CallHandler<C> {
  return interceptors.reduceRight<CallHandler<C>>((next, interceptor) => interceptor(next), handler);
}
