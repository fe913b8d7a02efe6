/**
 * The load generator, run as a child process of bench/main.ts so its CPU is not the server's:
 * a real gRPC client (Connect over HTTP/2, the project's own `remoteClient`) keeping a fixed
 * number of calls in flight against one address, for a warm-up and then a measured window.
 *
 * Protocol (IPC): the parent sends `{ type: "ids", ids }` then any number of `RunCommand`s, one at
 * a time; each answers a `RunResult`. The child exits when the parent disconnects.
 */
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { remoteClient } from "../src/server/clients.ts";

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
const clients = new Map<string, { accounts: ReturnType<typeof remoteClient<typeof AccountService>>; proxies: ReturnType<typeof remoteClient<typeof ProxyService>> }>();

function clientsFor(accountAddr: string, proxyAddr: string) {
  const key = `${accountAddr} ${proxyAddr}`;
  let c = clients.get(key);
  if (!c) {
    c = { accounts: remoteClient(AccountService, { addr: accountAddr }), proxies: remoteClient(ProxyService, { addr: proxyAddr }) };
    clients.set(key, c);
  }
  return c;
}

async function run(cmd: RunCommand): Promise<RunResult> {
  const { accounts, proxies } = clientsFor(cmd.accountAddr, cmd.proxyAddr);
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
          await accounts.getAccount({ accountId: ids[Math.floor(Math.random() * n)] });
        }
      : async (w: number) => {
          const slots = Math.floor((n - 1 - w) / cmd.concurrency) + 1;
          const accountId = ids[w + cmd.concurrency * Math.floor(Math.random() * slots)];
          const p = await proxies.allocateProxy({ accountId, platform: "vk" });
          if (!p.id) throw new Error("AllocateProxy answered no proxy id");
          const r = await proxies.releaseProxy({ accountId });
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
