import { create } from "@bufbuild/protobuf";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, createContextValues } from "@connectrpc/connect";
import type { ConnectRouter, ContextValues, HandlerContext } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { Principal } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import type { CallDeps } from "./grpc-server.ts";
import { applyInterceptors, routesOf } from "./interceptor.ts";
import type { CallHandler, Route, ServerCall } from "./interceptor.ts";
import { CLIENT_CANCELLED, authorize, callDeadline, callLog, decodeRequest, recovery } from "./interceptors.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { traceCalls } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";
import type { StatusOut } from "./status.ts";

/**
 * The thin Connect adapter: serves bindings with @connectrpc/connect's router (Connect JSON and
 * binary, gRPC-Web and gRPC on the HTTP port), every call passing the SAME interceptor chain as
 * the grpc-js ports (call log + metrics, recovery, deadline, auth + scope, request check), so
 * nothing about auth, audit, logging or metrics is duplicated. Connect decodes the request (JSON
 * or binary) itself; the chain's status becomes a ConnectError with the same code and message.
 */

/** The caller's address, taken from the Node request (connectNodeAdapter's contextValues). */
const remoteKey = createContextKey<string>("", { description: "remote address" });

/** connectNodeAdapter's `contextValues`: the caller's address as the call's peer ("127.0.0.1:51000"). */
export function connectContextValues(req: Parameters<NonNullable<ConnectNodeAdapterOptions["contextValues"]>>[0]): ContextValues {
  const s = req.socket;
  const host = s.remoteAddress ?? "";
  return createContextValues().set(remoteKey, `${host.includes(":") ? `[${host}]` : host}:${s.remotePort ?? 0}`);
}

/** Registers every binding (or bare service, all UNIMPLEMENTED) on the router. */
export function connectRoutesOf(bindings: readonly (ServiceBinding | { service: DescService; impl?: undefined })[], deps: CallDeps): (router: ConnectRouter) => void {
  // The server span outermost (when a tracer provider is registered), so the call log's line carries its ids.
  const observed = [...(tracingEnabled() ? [traceCalls] : []), callLog(deps.log, deps.metrics), recovery];
  const guarded = [...observed, callDeadline, authorize(deps.auth), decodeRequest(deps.shutdown)];
  const unary = applyInterceptors(answerUnary, guarded);
  const stream = applyInterceptors(answerStream, guarded);
  const unimplemented = applyInterceptors(refuseUnimplemented, observed);
  return (router) => {
    for (const binding of bindings) {
      const methods: Record<string, unknown> = {};
      for (const route of routesOf(binding)) {
        const { method } = route;
        const chain = route.fn ? (route.streaming ? stream : unary) : unimplemented;
        methods[method.localName] = route.streaming ? (req: unknown, ctx: HandlerContext) => serveStream(chain, new ConnectCall(route, req, ctx)) : (req: unknown, ctx: HandlerContext) => serveUnary(chain, new ConnectCall(route, req, ctx));
      }
      router.service(binding.service, methods as never);
    }
  };
}

/** A Connect call as a ServerCall: the request already decoded, the headers and signal Connect's. */
class ConnectCall implements ServerCall {
  readonly route: Route;
  readonly ctx: HandlerContext;
  readonly protocol: string;
  readonly body = undefined;
  readonly deadline: number | undefined;
  /** Aborted when the client goes away (Connect's signal) or stops reading a stream. */
  readonly cancel = new AbortController();
  readonly signal: AbortSignal;
  /** A streaming call's hand-off from the chain (the producer) to Connect (the consumer). */
  readonly out = new Handoff();
  principal: Principal | undefined = undefined;
  request: unknown;
  context: ServerCall["context"] = undefined;
  status: StatusOut | undefined = undefined;
  error: unknown = undefined;
  response: unknown = undefined;

  constructor(route: Route, req: unknown, ctx: HandlerContext) {
    this.route = route;
    this.ctx = ctx;
    this.request = req;
    this.protocol = ctx.protocolName;
    const ms = ctx.timeoutMs();
    this.deadline = ms === undefined ? undefined : Date.now() + ms;
    this.signal = AbortSignal.any([ctx.signal, this.cancel.signal]);
  }

  peer(): string {
    return this.ctx.values.get(remoteKey);
  }

  authorization(): string | undefined {
    return this.ctx.requestHeader.get("authorization") ?? undefined;
  }

  requestHeader(): Headers {
    const header = new Headers(this.ctx.requestHeader);
    header.delete("authorization");
    return header;
  }
}

/** The chain's status as the error Connect answers with: the same code, message and google.rpc details as on the gRPC ports. */
export function connectErrorOf(s: StatusOut, cause: unknown): ConnectError {
  const e = new ConnectError(s.message, s.code as number as Code, undefined, undefined, cause);
  if (s.details) e.details.push(...s.details);
  return e;
}

const DEADLINE_EXCEEDED = new ConnectError("the call's deadline passed", Code.DeadlineExceeded);

async function serveUnary(chain: CallHandler<ConnectCall>, call: ConnectCall): Promise<unknown> {
  const out = await chain(call);
  if (call.status) throw connectErrorOf(call.status, call.error);
  return out;
}

/**
 * The streaming adapter: runs the chain (whose innermost handler hands each message over, one at
 * a time, so a slow reader holds the producer back), yields what it hands over, and ends with
 * recovery's status. A client that goes away (Connect returns this generator) cancels the call.
 */
async function* serveStream(chain: CallHandler<ConnectCall>, call: ConnectCall): AsyncGenerator<unknown> {
  const done = chain(call).finally(() => call.out.close());
  try {
    yield* call.out;
    await done;
    // The deadline (connect-timeout-ms, grpc-timeout) ended it: answer that, as grpc-js does.
    const reason: unknown = call.ctx.signal.reason;
    if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) throw reason;
    if (call.deadline !== undefined && Date.now() >= call.deadline) throw DEADLINE_EXCEEDED;
    if (call.status) throw connectErrorOf(call.status, call.error);
  } finally {
    if (!call.out.closed) call.cancel.abort(CLIENT_CANCELLED);
    call.out.close();
  }
}

async function answerUnary(call: ConnectCall): Promise<unknown> {
  const { output } = call.route.method;
  const out = create(output, (await call.route.fn!(call.request, call.context!)) as never);
  // Read by the call log's outcome (a Register answered success=false counts as failed).
  call.response = out;
  return out;
}

async function answerStream(call: ConnectCall): Promise<void> {
  const { output } = call.route.method;
  for await (const m of call.route.fn!(call.request, call.context!) as AsyncIterable<unknown>) {
    if (call.signal.aborted) break;
    await call.out.push(create(output, m as never), call.signal);
  }
}

async function refuseUnimplemented(call: ServerCall): Promise<never> {
  throw new AppError("UNIMPLEMENTED", `${call.route.label} has no implementation bound on this server`);
}

/** A one-message hand-off: push resolves once the consumer has taken the message and asked for the next (or on abort). */
class Handoff implements AsyncIterable<unknown> {
  closed = false;
  private item: { m: unknown; taken: () => void } | undefined;
  private wake: (() => void) | undefined;

  push(m: unknown, signal: AbortSignal): Promise<void> {
    if (this.closed || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const taken = () => {
        signal.removeEventListener("abort", taken);
        resolve();
      };
      signal.addEventListener("abort", taken, { once: true });
      this.item = { m, taken };
      this.notify();
    });
  }

  close(): void {
    this.closed = true;
    this.item?.taken();
    this.item = undefined;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<unknown> {
    for (;;) {
      const item = this.item;
      if (item) {
        this.item = undefined;
        yield item.m;
        item.taken();
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}
