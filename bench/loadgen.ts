/**
 * The load generator, run as a child process of bench/main.ts so its CPU is not the server's:
 * a real gRPC client keeping a fixed number of calls in flight against one address, for a
 * warm-up and then a measured window. The client is @grpc/grpc-js's generic Client (one HTTP/2
 * channel per address, messages encoded with protobuf-es), the same for the bare baseline and
 * for Conveer. (The Connect client of src/server/clients.ts costs about twice the CPU per call,
 * enough to make the load generator the bottleneck on a small host.)
 *
 * Protocol (IPC): the parent sends `{ type: "ids", ids }` then any number of `RunCommand`s, one at
 * a time; each answers a `RunResult`. The child exits when the parent disconnects.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { AccountSchema, GetAccountRequestSchema } from "../src/gen/conveer/v1/account_pb.js";
import { AllocateProxyRequestSchema, ProxySchema, ReleaseProxyRequestSchema, ReleaseProxyResponseSchema } from "../src/gen/conveer/v1/proxy_pb.js";

/** What to measure. "get": GetAccount on a random id; "pair": AllocateProxy then ReleaseProxy for one account. */
export type Scenario = "get" | "pair";

export type RunCommand = { type: "run"; scenario: Scenario; accountAddr: string; proxyAddr: string; concurrency: number; warmupMs: number; durationMs: number };

export type RunResult = {
  type: "result";
  /** Operations completed in the measured window (a pair counts once). */
  ops: number;
  /** gRPC calls completed in the window (2 per pair). */
  calls: number;
  measuredMs: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  firstError: string;
  /** CPU time this client process used in the window, in ms (user + system). */
  clientCpuMs: number;
};

export type LoadgenMessage = { type: "ids"; ids: string[] } | RunCommand;

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

let ids: string[] = [];
const channels = new Map<string, grpc.Client>();

function channel(addr: string): grpc.Client {
  let c = channels.get(addr);
  if (!c) {
    c = new grpc.Client(addr, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 10 * 1024 * 1024 });
    channels.set(addr, c);
  }
  return c;
}

/** A typed unary call over a grpc-js channel with protobuf-es encoding. */
function unary<I extends DescMessage, O extends DescMessage>(addr: string, path: string, input: I, output: O) {
  const serialize = (m: MessageShape<I>) => Buffer.from(toBinary(input, m));
  const deserialize = (b: Buffer) => fromBinary(output, b);
  return (req: MessageInitShape<I>): Promise<MessageShape<O>> =>
    new Promise((resolve, reject) => {
      channel(addr).makeUnaryRequest(path, serialize, deserialize, create(input, req), (err, res) => (err ? reject(err) : resolve(res!)));
    });
}

async function run(cmd: RunCommand): Promise<RunResult> {
  const getAccount = unary(cmd.accountAddr, "/conveer.AccountService/GetAccount", GetAccountRequestSchema, AccountSchema);
  const allocateProxy = unary(cmd.proxyAddr, "/conveer.ProxyService/AllocateProxy", AllocateProxyRequestSchema, ProxySchema);
  const releaseProxy = unary(cmd.proxyAddr, "/conveer.ProxyService/ReleaseProxy", ReleaseProxyRequestSchema, ReleaseProxyResponseSchema);
  const n = ids.length;
  if (n === 0) throw new Error("no ids were sent to the load generator");
  const start = performance.now();
  const from = start + cmd.warmupMs;
  const to = from + cmd.durationMs;
  const lat: number[] = [];
  let errors = 0;
  let firstError = "";
  let cpuAtFrom: NodeJS.CpuUsage | undefined;
  let cpuAtTo: NodeJS.CpuUsage | undefined;
  const t1 = setTimeout(() => (cpuAtFrom = process.cpuUsage()), cmd.warmupMs);
  const t2 = setTimeout(() => (cpuAtTo = process.cpuUsage()), cmd.warmupMs + cmd.durationMs);

  // Each worker of the pair scenario owns the accounts whose index ≡ worker (mod concurrency),
  // so two in-flight pairs never race on one account.
  const op =
    cmd.scenario === "get"
      ? async (_w: number) => {
          await getAccount({ accountId: ids[Math.floor(Math.random() * n)] });
        }
      : async (w: number) => {
          const slots = Math.floor((n - 1 - w) / cmd.concurrency) + 1;
          const accountId = ids[w + cmd.concurrency * Math.floor(Math.random() * slots)];
          const p = await allocateProxy({ accountId, platform: "vk" });
          if (!p.id) throw new Error("AllocateProxy answered no proxy id");
          const r = await releaseProxy({ accountId });
          if (!r.success) throw new Error(`ReleaseProxy did not release account ${accountId}`);
        };

  async function worker(w: number): Promise<void> {
    while (performance.now() < to) {
      const a = performance.now();
      let ok = true;
      try {
        await op(w);
      } catch (err) {
        ok = false;
        errors++;
        firstError ||= String((err as Error).message ?? err);
      }
      const b = performance.now();
      if (ok && b >= from && b <= to) lat.push(b - a);
    }
  }
  await Promise.all(Array.from({ length: cmd.concurrency }, (_, w) => worker(w)));
  clearTimeout(t1);
  clearTimeout(t2);
  const sorted = Float64Array.from(lat).sort();
  const cpu = cpuAtFrom && cpuAtTo ? (cpuAtTo.user - cpuAtFrom.user + cpuAtTo.system - cpuAtFrom.system) / 1000 : Number.NaN;
  return {
    type: "result",
    ops: lat.length,
    calls: lat.length * (cmd.scenario === "pair" ? 2 : 1),
    measuredMs: cmd.durationMs,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    errors,
    firstError,
    clientCpuMs: cpu,
  };
}

process.on("disconnect", () => process.exit(0));
process.on("message", (msg: LoadgenMessage) => {
  if (msg.type === "ids") {
    ids = msg.ids;
    process.send!({ type: "ids-ok", count: ids.length });
    return;
  }
  run(msg).then(
    (r) => process.send!(r),
    (err: unknown) => process.send!({ type: "error", message: String((err as Error).stack ?? err) }),
  );
});
process.send!({ type: "ready" });
