/**
 * `node bench/cluster.ts` (root: network namespaces): warming throughput with 1, 2 and 3 Conveer
 * hosts on one PostgreSQL, built by test/cluster/cluster.ts (each host in its own namespace,
 * tokens and TLS on, the shared sandbox with no added latency and two proxies). Per round, one
 * more host is started and BENCH_CLUSTER_TASKS tasks (default 200) × 12 actions are started and
 * run (CONVEER_TIME_SCALE=100000: a task's four scenario days pass in 3.5 s, so the actions are
 * due faster than they can run); reported: actions/s over the round (StartWarming calls
 * included), and the CPU seconds each host, PostgreSQL and this process (the sandbox and the
 * proxies every action goes through) spent during it, since all of them share this machine's cores.
 */
import { readFileSync, readdirSync } from "node:fs";
import { PER_TASK, createCluster } from "../test/cluster/cluster.ts";
import { makeAccounts, addProxies, startTasks, waitEnded } from "../test/cluster/books.ts";
import { netnsUnavailable } from "../test/cluster/netns.ts";

const TASKS = Number(process.env.BENCH_CLUSTER_TASKS ?? 200);
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

const why = netnsUnavailable();
if (why) {
  console.log(`bench/cluster.ts skipped: ${why}`);
  process.exit(0);
}
const c = await createCluster({ CONVEER_TIME_SCALE: "100000", CONVEER_LOG_LEVEL: "warn", CONVEER_WARMING_LEASE_MS: "30000" });
try {
  console.log(`warming, saturated: ${TASKS} tasks × ${PER_TASK} actions per round; hosts share ${readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm)?.length} cores with PostgreSQL and the sandbox`);
  console.log("hosts | actions/s | wall s | CPU s per host | PostgreSQL CPU s | this process (sandbox, proxies) CPU s");
  for (let n = 1; n <= 3; n++) {
    const hosts = c.hosts.slice(0, n);
    await hosts[n - 1].start();
    if (n === 1) await addProxies(c, hosts[0], 10_000);
    const accounts = await makeAccounts(c, hosts[0], TASKS, `bench${n}`);
    const pgPids = postgresPids(c.pg.dir);
    const cpu0 = hosts.map((h) => cpuOf(h.cli.proc.pid!));
    const pg0 = pgPids.reduce((s, p) => s + cpuOf(p), 0);
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    const ids = await startTasks(hosts, accounts).catch((err: Error) => {
      const pgErrors = readFileSync(`${c.pg.dir}/log`, "utf8").split("\n").filter((l) => /ERROR|DETAIL/.test(l));
      console.log(`# PostgreSQL: ${pgErrors.slice(-6).join("\n# ")}`);
      for (const h of hosts) for (const l of h.cli.logs()) if (Number(l.level) >= 40 && !/auth mode|sandbox/.test(String(l.msg))) console.log(`# ${h.name}: ${JSON.stringify(l).slice(0, 1500)}`);
      throw err;
    });
    await waitEnded(hosts[0], ids, 600_000);
    const secs = (performance.now() - t0) / 1000;
    const cpu = hosts.map((h, i) => (cpuOf(h.cli.proc.pid!) - cpu0[i]).toFixed(1));
    const pg = pgPids.reduce((s, p) => s + cpuOf(p), 0) - pg0;
    const self = process.cpuUsage(self0);
    console.log(`${n} | ${((TASKS * PER_TASK) / secs).toFixed(0)} | ${secs.toFixed(1)} | ${cpu.join(", ")} | ${pg.toFixed(1)} | ${((self.user + self.system) / 1e6).toFixed(1)}`);
  }
} finally {
  await c.close();
}
