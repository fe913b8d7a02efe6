import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { pino } from "pino";
import { AccountService, GetAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";
import { callDeadline as deadlineNow } from "../store/call-deadline.ts";
import { applyInterceptors } from "./interceptor.ts";
import type { CallHandler, Route, ServerCall, ServerInterceptor } from "./interceptor.ts";
import { CLIENT_CANCELLED, authorize, callDeadline, callLog, decodeRequest, recovery } from "./interceptors.ts";
import { createMetrics } from "./metrics.ts";
import { principalOf } from "./service-binding.ts";

const getAccount = AccountService.method.getAccount;

function route(over: Partial<Route> = {}): Route {
  return { service: AccountService, method: getAccount, path: "/conveer.AccountService/GetAccount", label: "conveer.AccountService.GetAccount", streaming: false, scope: "accounts:read", fn: undefined, ...over };
}

function call(over: Partial<ServerCall> = {}): ServerCall {
  return {
    route: route(),
    protocol: "test",
    body: toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId: "a1" })),
    deadline: undefined,
    signal: new AbortController().signal,
    peer: () => "ipv4:127.0.0.1:1",
    authorization: () => "Bearer t",
    requestHeader: () => new Headers(),
    principal: undefined,
    request: undefined,
    context: undefined,
    status: undefined,
    error: undefined,
    ...over,
  };
}

test("applyInterceptors: the first interceptor is the outermost", async () => {
  const seen: string[] = [];
  const tag =
    (name: string): ServerInterceptor =>
    (next) =>
    async (c) => {
      seen.push(`${name} in`);
      const out = await next(c);
      seen.push(`${name} out`);
      return out;
    };
  const handler: CallHandler = async () => (seen.push("handler"), 42);
  assert.equal(await applyInterceptors(handler, [tag("a"), tag("b")])(call()), 42);
  assert.deepEqual(seen, ["a in", "b in", "handler", "b out", "a out"]);
});

test("recovery: a throw becomes the call's status, an unknown error INTERNAL with its cause kept", async () => {
  const bug = new Error("boom");
  const c = call();
  assert.equal(await recovery(async () => Promise.reject(bug))(c), undefined);
  assert.deepEqual(c.status, { code: grpc.status.INTERNAL, message: "internal error", internal: true });
  assert.equal(c.error, bug);
  const d = call();
  await recovery(() => {
    throw new AppError("NOT_FOUND", "no account a1");
  })(d);
  assert.equal(d.status?.code, grpc.status.NOT_FOUND);
});

test("recovery: a stream the client cancelled ends as CANCELLED whatever it threw; a unary call keeps its error", async () => {
  const ac = new AbortController();
  ac.abort(CLIENT_CANCELLED);
  const s = call({ route: route({ streaming: true }), signal: ac.signal });
  await recovery(async () => Promise.reject(new Error("write after end")))(s);
  assert.equal(s.status?.code, grpc.status.CANCELLED);
  const u = call({ signal: ac.signal });
  await recovery(async () => Promise.reject(new Error("write after end")))(u);
  assert.equal(u.status?.code, grpc.status.INTERNAL);
});

test("callLog: counts every call by code and logs an internal error with its cause", async () => {
  const lines: string[] = [];
  const metrics = createMetrics();
  const log = pino({ level: "warn" }, { write: (l: string) => void lines.push(l) });
  const chain = applyInterceptors(async () => Promise.reject(new Error("boom")), [callLog(log, metrics), recovery]);
  await chain(call());
  const text = await metrics.registry.metrics();
  assert.match(text, /conveer_grpc_calls_total\{service="conveer.AccountService",method="GetAccount",code="INTERNAL"\} 1/);
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.method, "/conveer.AccountService/GetAccount");
  assert.equal(entry.code, "INTERNAL");
  assert.match(entry.err.message, /boom/);
});

test("callDeadline: the rest of the call runs under the caller's deadline", async () => {
  const at = Date.now() + 60_000;
  assert.equal(await callDeadline(async () => deadlineNow())(call({ deadline: at })), at);
  assert.equal(await callDeadline(async () => deadlineNow())(call()), undefined);
});

const reader: Principal = Object.freeze({ name: "reader", scopes: new Set(["accounts:read"]), open: false });
const fakeAuth: Authenticator = {
  authenticate: async (h) => {
    if (h !== "Bearer t") throw new AppError("UNAUTHENTICATED", "no token");
    return reader;
  },
  authorize: (p, scope, method) => {
    if (!p.scopes.has(scope)) throw new AppError("PERMISSION_DENIED", `${method} needs ${scope}`);
  },
  isOpen: async () => false,
};

test("authorize: the principal is set only once it holds the method's scope; a method without one is refused", async () => {
  const ok = call();
  await authorize(fakeAuth)(async (c) => c.principal)(ok);
  assert.equal(ok.principal, reader);
  await assert.rejects(authorize(fakeAuth)(async () => 1)(call({ authorization: () => undefined })), /no token/);
  const denied = call({ route: route({ scope: "accounts:write" }) });
  await assert.rejects(authorize(fakeAuth)(async () => 1)(denied), /conveer.AccountService.GetAccount needs accounts:write/);
  assert.equal(denied.principal, undefined);
  await assert.rejects(authorize(fakeAuth)(async () => 1)(call({ route: route({ scope: undefined }) })), /no scope is declared for GetAccount/);
});

test("decodeRequest: a checked message and a context carrying the principal, ended once the call is answered", async () => {
  const c = call({ principal: reader });
  const ctx = await decodeRequest(new AbortController().signal)(async (d) => {
    assert.equal((d.request as { accountId: string }).accountId, "a1");
    assert.equal(principalOf(d.context!), reader);
    assert.equal(d.context!.signal.aborted, false);
    return d.context;
  })(c);
  assert.equal((ctx as { signal: AbortSignal }).signal.aborted, true);
  await assert.rejects(decodeRequest(new AbortController().signal)(async () => 1)(call({ body: Uint8Array.of(0xff, 0xff) })), /request body is not a valid conveer.GetAccountRequest message/);
  const nul = toBinary(GetAccountRequestSchema, create(GetAccountRequestSchema, { accountId: "a\u0000" }));
  await assert.rejects(decodeRequest(new AbortController().signal)(async () => 1)(call({ body: nul })), (err: AppError) => err.code === "INVALID_ARGUMENT");
});
