/**
 * Low-level gRPC helpers for transport tests: raw grpc-js calls with byte bodies (no codegen),
 * the standard health and reflection clients loaded from the .proto files their packages ship,
 * free ports, and `rejectsWith` for Connect clients.
 */
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import net from "node:net";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, ConnectError } from "@connectrpc/connect";
import { protoPath as healthProtoPath } from "grpc-health-check";

/** The status a raw call ended with, and the response bodies it received. */
export type RawResult = { code: grpc.status; details: string; messages: Buffer[]; metadata?: grpc.Metadata };

const identity = (b: Buffer) => b;

/** A unary call with an arbitrary request body; always resolves (never rejects) with the final status. */
export function rawUnary(client: grpc.Client, path: string, body: Buffer, opts: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, body, opts.metadata ?? new grpc.Metadata(), { deadline: Date.now() + (opts.deadlineMs ?? 10_000) }, (err, res) => {
      if (err) resolve({ code: err.code, details: err.details, messages: [], metadata: err.metadata });
      else resolve({ code: grpc.status.OK, details: "", messages: res ? [res] : [] });
    });
  });
}

/** A server-streaming call with an arbitrary request body; resolves with every message and the final status. */
export function rawServerStream(client: grpc.Client, path: string, body: Buffer, opts: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(path, identity, identity, body, opts.metadata ?? new grpc.Metadata(), { deadline: Date.now() + (opts.deadlineMs ?? 10_000) });
    const messages: Buffer[] = [];
    call.on("data", (m: Buffer) => messages.push(m));
    call.on("error", () => {}); // the status event carries the outcome
    call.on("status", (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details, messages, metadata: s.metadata }));
  });
}

/** A grpc-js client for raw calls; close() it when done. */
export function rawClient(addr: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure()): grpc.Client {
  return new grpc.Client(addr, creds, { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 });
}

/** The grpc.health.v1.Health client, loaded from grpc-health-check's own proto file. */
export type HealthClient = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): grpc.ClientUnaryCall;
  watch(req: { service: string }, opts?: grpc.CallOptions): grpc.ClientReadableStream<{ status: string }>;
};

let healthCtor: grpc.ServiceClientConstructor | undefined;

/** A health client on addr. */
export function healthClient(addr: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure()): HealthClient {
  if (!healthCtor) {
    const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
    healthCtor = pkg.grpc.health.v1.Health;
  }
  return new healthCtor(addr, creds) as unknown as HealthClient;
}

/** Health Check as a promise: the status name, or the gRPC error. */
export function healthCheck(client: HealthClient, service: string, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    client.check({ service }, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res!.status)));
  });
}

/** The grpc.reflection.v1 (or v1alpha) ServerReflection client, loaded from @grpc/reflection's shipped proto. */
export type ReflectionClient = grpc.Client & {
  ServerReflectionInfo(opts?: grpc.CallOptions): grpc.ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
};
/** The parts of a reflection response the tests read. */
export type ReflectionResponse = {
  message_response: string;
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
};

/** A reflection client on addr for the given API version. */
export function reflectionClient(addr: string, version: "v1" | "v1alpha" = "v1"): ReflectionClient {
  const require = createRequire(import.meta.url);
  const root = join(dirname(require.resolve("@grpc/reflection/package.json")), "build", "proto");
  const def = protoLoader.loadSync(join(root, "grpc", "reflection", version, "reflection.proto"), { keepCase: true, oneofs: true, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> } };
  return new pkg.grpc.reflection[version].ServerReflection(addr, grpc.credentials.createInsecure()) as unknown as ReflectionClient;
}

/** One reflection request → its response. */
export function reflect(client: ReflectionClient, req: Record<string, unknown>): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo({ deadline: Date.now() + 5000 });
    call.once("data", (r: ReflectionResponse) => {
      resolve(r);
      call.end();
    });
    call.once("error", reject);
    call.write({ host: "", ...req });
  });
}

/**
 * A free loopback port for a process to bind later. Picked at random below the kernel's ephemeral
 * range: a port from bind(0) is in that range, where outgoing connections (database, HTTP, proxy
 * tunnels of tests running in parallel) can take it before the process binds it. Never the same
 * port twice in one test process.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = BELOW_EPHEMERAL.low + Math.floor(Math.random() * (BELOW_EPHEMERAL.high - BELOW_EPHEMERAL.low));
    if (handedOut.has(port)) continue;
    const s = net.createServer();
    const ok = await new Promise<boolean>((r) => s.once("error", () => r(false)).listen(port, "127.0.0.1", () => r(true)));
    if (!ok) continue;
    await new Promise<void>((r) => s.close(() => r()));
    handedOut.add(port);
    return port;
  }
}
const handedOut = new Set<number>();
const BELOW_EPHEMERAL = (() => {
  let first = 32768;
  try {
    first = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || first;
  } catch {
    // not Linux: the IANA default
  }
  return { low: Math.max(1024, first - 12_000), high: first };
})();

/** Asserts that p rejects with the gRPC code (a Connect client's error), and that the message matches `mentions`. */
export async function rejectsWith(p: Promise<unknown>, code: Code, mentions?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    if (mentions) assert.match(err.rawMessage, mentions);
    return true;
  });
}

/** The name of a grpc-js status code. */
export function codeName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}

/** Polls fn until it returns true (or throws the last failure after timeoutMs). */
export async function eventually(fn: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}
