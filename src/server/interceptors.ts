import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import { withCallDeadline } from "../store/call-deadline.ts";
import type { ServerInterceptor } from "./interceptor.ts";
import type { CallOutcome, Metrics } from "./metrics.ts";
import { checkRequest } from "./request-check.ts";
import { CallContext } from "./call-context.ts";
import { CALL_FINISHED } from "./service-binding.ts";
import { statusName, toStatus } from "./status.ts";
import type { StatusOut } from "./status.ts";

/** The reason a call's signal is aborted with when the client cancels. Built once, like CALL_FINISHED. */
export const CLIENT_CANCELLED = new AppError("CANCELLED", "the client cancelled the call");

const OK: StatusOut = Object.freeze({ code: grpc.status.OK, message: "", internal: false });

/**
 * Logs every call (method, peer, duration, code, token) and counts it in the metrics; an internal
 * error is logged with its cause. Outermost, around recovery, so it sees every call's final status.
 */
export function callLog(log: Logger, metrics: Metrics): ServerInterceptor {
  return (next) => async (call) => {
    const started = performance.now();
    const out = await next(call);
    const s = call.status ?? OK;
    const durationMs = performance.now() - started;
    const outcome: CallOutcome = s.code !== grpc.status.OK ? "error" : reportsFailure(call.response) ? "failed" : "ok";
    metrics.observeCall(call.route.service.typeName, call.route.method.name, statusName(s.code), durationMs / 1000, outcome);
    if (!s.internal && !log.isLevelEnabled("info")) return out;
    const entry = { method: call.route.path, peer: call.peer(), duration_ms: Math.round(durationMs * 100) / 100, code: statusName(s.code), outcome, token: call.principal?.name };
    if (s.internal) log.error({ ...entry, err: call.error }, "call failed with an internal error");
    else log.info(entry, "call");
    return out;
  };
}

/** True when a unary response reports its own failure with `success: false` (RegisterResponse, ExecuteActionResponse). */
function reportsFailure(response: unknown): boolean {
  return typeof response === "object" && response !== null && "success" in response && response.success === false;
}

/**
 * Any throw becomes the call's status (toStatus: an unknown error is INTERNAL, its cause kept for
 * the log, never sent), so a failing handler never takes the process down. A stream the client
 * cancelled ends as CANCELLED, whatever its iterator threw on the way out.
 */
export const recovery: ServerInterceptor = (next) => async (call) => {
  try {
    return await next(call);
  } catch (err) {
    call.error = call.route.streaming && call.signal.aborted ? CLIENT_CANCELLED : err;
    call.status = toStatus(call.error);
    return undefined;
  }
};

/** Runs the rest of the call under the caller's deadline, for the store to bound its waits by (withCallDeadline). */
export const callDeadline: ServerInterceptor = (next) => (call) => (call.deadline === undefined ? next(call) : withCallDeadline(call.deadline, () => next(call)));

/** Authentication (token → principal) and authorization (the method's scope). */
export function authorize(auth: Authenticator): ServerInterceptor {
  return (next) => async (call) => {
    const principal = await auth.authenticate(call.authorization());
    const { route } = call;
    if (!route.scope) throw new AppError("PERMISSION_DENIED", `no scope is declared for ${route.method.name}`);
    auth.authorize(principal, route.scope, route.label);
    call.principal = principal;
    return next(call);
  };
}

/**
 * Decodes the request (a malformed body is INVALID_ARGUMENT; a transport that decoded it itself
 * leaves `body` undefined), passes it through checkRequest
 * (string lengths, NUL, time ranges), and gives the handler its context (principal, peer,
 * deadline, the client's cancel and the process's shutdown), ended once the call is answered:
 * that clears its deadline timer and unlinks it from the shutdown signal.
 */
export function decodeRequest(shutdown: AbortSignal): ServerInterceptor {
  return (next) => async (call) => {
    const { service, method, path } = call.route;
    if (call.body !== undefined) {
      try {
        call.request = fromBinary(method.input, call.body);
      } catch (err) {
        throw new AppError("INVALID_ARGUMENT", `request body is not a valid ${method.input.typeName} message: ${(err as Error).message}`);
      }
    }
    checkRequest(method.input, call.request as object);
    const ctx = new CallContext({
      service,
      method,
      protocolName: call.protocol,
      url: path,
      // A deadline already passed is none (as Connect's createHandlerContext had it): the store's own bounds apply.
      deadline: call.deadline !== undefined && call.deadline > Date.now() ? call.deadline : undefined,
      requestSignal: call.signal,
      shutdownSignal: shutdown,
      requestHeader: () => call.requestHeader(),
      principal: call.principal,
      peer: call.peer(),
    });
    call.context = ctx;
    try {
      return await next(call);
    } finally {
      ctx.abort(CALL_FINISHED);
    }
  };
}
