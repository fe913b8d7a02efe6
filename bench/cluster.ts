/**
 * `node bench/cluster.ts` (root: network namespaces): warming and registration throughput with 1,
 * 2 and 3 Conveer hosts on one PostgreSQL, built by test/cluster/cluster.ts (each host in its own
 * namespace, tokens and TLS on, the database over TLS, the shared sandbox with no added latency
 * and two proxies). Per round, one more host is started, then:
 * - warming: BENCH_CLUSTER_TASKS tasks (default 200) × 12 actions are started through the hosts in
 *   turn and run (CONVEER_TIME_SCALE=100000: a task's four scenario days pass in 3.5 s, so the
 *   actions are due faster than they can run);
 * - registrations: BENCH_CLUSTER_REGS VK registrations (default 240), 40 callers at a time spread
 *   over the hosts, SMS codes sent at once.
 * Reported for each: the wall-clock rate, its ratio to 1 host in the same run, and the CPU seconds
 * each host, PostgreSQL and this process (the sandbox and the proxies) spent during it, since all
 * of them share this machine's cores; then what a cluster with cores of its own per host would do.
 */
import { readFileSync, readdirSync } from "node:fs";
import { PER_TASK, createCluster } from "../test/cluster/cluster.ts";
import type { Host } from "../test/cluster/cluster.ts";
import { makeAccounts, addProxies, registerVk, startTasks, waitEnded } from "../test/cluster/books.ts";
import { netnsUnavailable } from "../test/cluster/netns.ts";

const TASKS = Number(process.env.BENCH_CLUSTER_TASKS ?? 200);
const REGS = Number(process.env.BENCH_CLUSTER_REGS ?? 240);
const CALLERS = 40; // under the sandbox's 50 numbers per service and country, all rented at once while codes are awaited
const TICK = 100; // USER_HZ

/** utime + stime of a process, in seconds (0 once it is gone). */
function cpuOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return 0;
  }
}

/** The cluster's postmaster (from postmaster.pid) and its children: the backends. */
function postgresPids(dir: string): number[] {
  const postmaster = Number(readFileSync(`${dir}/data/postmaster.pid`, "utf8").split("\n")[0]);
  const out = [postmaster];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1].split(" ")[1]) === postmaster) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** What one phase of a round cost: wall seconds and CPU seconds per host, PostgreSQL's and this process's. */
type Cost = { secs: number; hosts: number[]; pg: number; self: number };

/** Runs `work` and measures it. */
async function measure(pgDir: string, hosts: Host[], work: () => Promise<void>): Promise<Cost> {
  const pgPids = postgresPids(pgDir);
  const cpu0 = hosts.map((h) => cpuOf(h.cli.proc.pid!));
  const pg0 = pgPids.reduce((s, p) => s + cpuOf(p), 0);
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const self = process.cpuUsage(self0);
  return {
    secs: (performance.now() - t0) / 1000,
    hosts: hosts.map((h, i) => cpuOf(h.cli.proc.pid!) - cpu0[i]),
    pg: pgPids.reduce((s, p) => s + cpuOf(p), 0) - pg0,
    self: (self.user + self.system) / 1e6,
  };
}

/** REGS registrations, CALLERS at a time, each caller on a host of its own in turn; every one must succeed. */
async function registrations(hosts: Host[], prefix: string): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, k) => {
      for (let i = next++; i < REGS; i = next++) {
        const r = await registerVk(hosts[k % hosts.length], `${prefix}_${i}`);
        if (!r.success) throw new Error(`registration failed at ${r.failedStep}: ${r.error}`);
      }
    }),
  );
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const row = (n: number, rate: number, base: number, c: Cost) =>
  `${n} | ${rate.toFixed(1)} | ×${(rate / base).toFixed(2)} | ${c.secs.toFixed(1)} | ${c.hosts.map((x) => x.toFixed(1)).join(", ")} | ${c.pg.toFixed(1)} | ${c.self.toFixed(1)}`;

/** What n hosts with cores of their own would do, from the CPU one unit (an action, a registration) cost here. */
function explain(unit: string, units: number, runs: Cost[], cores: number): string {
  const per = runs.map((c) => ({ host: (sum(c.hosts) / units) * 1000, pg: (c.pg / units) * 1000 }));
  const last = per[per.length - 1];
  const n = runs.length;
  return (
    `per ${unit}: ${per.map((p, i) => `${i + 1} host${i ? "s" : ""} ${p.host.toFixed(1)} ms hosts' CPU + ${p.pg.toFixed(1)} ms PostgreSQL CPU`).join("; ")}. ` +
    `A real cluster (one core set per host) runs ~${(1000 / last.host).toFixed(0)} ${unit}s/s per host core at ${n} hosts' cost, so n hosts give about n times that until PostgreSQL is the limit, ~${(1000 / last.pg).toFixed(0)} ${unit}s/s per PostgreSQL core; ` +
    `here every host, PostgreSQL and the sandbox share ${cores} cores, so ${n} hosts ran at ×${(runs[0].secs / runs[n - 1].secs).toFixed(2)} the rate of 1 (more hosts add CPU work, not cores)`
  );
}

const why = netnsUnavailable();
if (why) {
  console.log(`bench/cluster.ts skipped: ${why}`);
  process.exit(0);
}
/** Shows what PostgreSQL and the hosts logged (and whether each still runs), then rethrows. */
const failed = (hosts: Host[]) => (err: Error): never => {
  const pgErrors = readFileSync(`${c.pg.dir}/log`, "utf8").split("\n").filter((l) => /ERROR|DETAIL|FATAL/.test(l));
  console.log(`# PostgreSQL: ${pgErrors.slice(-6).join("\n# ")}`);
  for (const h of hosts) {
    console.log(`# ${h.name}: ${h.cli.running() ? "running" : `exited: ${h.cli.stderr().slice(-1500)}`}`);
    for (const l of h.cli.logs()) if (Number(l.level) >= 40 && !/auth mode|sandbox/.test(String(l.msg))) console.log(`# ${h.name}: ${JSON.stringify(l).slice(0, 1500)}`);
  }
  throw err;
};
const c = await createCluster({ CONVEER_TIME_SCALE: "100000", CONVEER_LOG_LEVEL: "warn", CONVEER_WARMING_LEASE_MS: "30000" });
try {
  c.sandbox.setFaults({ latency: { minMs: 0, maxMs: 0 }, codeDelayMs: 0 });
  c.sandbox.setRateLimit({ burst: 1e9, perSecond: 1e9 });
  c.sandbox.topUp(REGS * 3 * 100);
  const cores = readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm)?.length ?? 0;
  const warming: Cost[] = [];
  const regs: Cost[] = [];
  for (let n = 1; n <= 3; n++) {
    const hosts = c.hosts.slice(0, n);
    await hosts[n - 1].start();
    if (n === 1) await addProxies(c, hosts[0], 10_000);
    const accounts = await makeAccounts(c, hosts[0], TASKS, `bench${n}`);
    warming.push(
      await measure(c.pg.dir, hosts, async () => {
        const ids = await startTasks(hosts, accounts).catch(failed(hosts));
        await waitEnded(hosts[0], ids, 600_000);
      }),
    );
    regs.push(await measure(c.pg.dir, hosts, () => registrations(hosts, `benchreg${n}`).catch(failed(hosts))));
  }
  const header = "hosts | %s/s | vs 1 host | wall s | CPU s per host | PostgreSQL CPU s | this process (sandbox, proxies) CPU s";
  console.log(`warming, saturated: ${TASKS} tasks × ${PER_TASK} actions per round; hosts share ${cores} cores with PostgreSQL and the sandbox`);
  console.log(header.replace("%s", "actions"));
  warming.forEach((w, i) => console.log(row(i + 1, (TASKS * PER_TASK) / w.secs, (TASKS * PER_TASK) / warming[0].secs, w)));
  console.log(`registrations: ${REGS} per round, ${CALLERS} callers spread over the hosts, SMS codes at once`);
  console.log(header.replace("%s", "registrations"));
  regs.forEach((r, i) => console.log(row(i + 1, REGS / r.secs, REGS / regs[0].secs, r)));
  console.log(`# ${explain("action", TASKS * PER_TASK, warming, cores)}`);
  console.log(`# ${explain("registration", REGS, regs, cores)}`);
} finally {
  await c.close();
}
