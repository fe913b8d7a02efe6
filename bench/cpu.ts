/** CPU accounting over a window: this process, the whole host (/proc/stat), and given pids (/proc/<pid>/stat). */
import { readFileSync } from "node:fs";

const TICKS_PER_SEC = 100; // USER_HZ on Linux

function hostTicks(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = f[3] + (f[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

function pidTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return 0;
  }
}

/** A snapshot to diff later. */
export type CpuSnapshot = { at: number; self: NodeJS.CpuUsage; host?: { busy: number; total: number }; pids: Map<number, number> };

export function snapshot(pids: number[] = []): CpuSnapshot {
  return { at: performance.now(), self: process.cpuUsage(), host: hostTicks(), pids: new Map(pids.map((p) => [p, pidTicks(p)])) };
}

/** CPU use between two snapshots, in % of one core (host: % of all cores). */
export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): { selfPct: number; pidsPct: number; hostPct: number } {
  const wallMs = b.at - a.at;
  const selfMs = (b.self.user - a.self.user + b.self.system - a.self.system) / 1000;
  let pidTicksSum = 0;
  for (const [pid, t0] of a.pids) pidTicksSum += (b.pids.get(pid) ?? t0) - t0;
  const hostPct = a.host && b.host && b.host.total > a.host.total ? (100 * (b.host.busy - a.host.busy)) / (b.host.total - a.host.total) : Number.NaN;
  return {
    selfPct: (100 * selfMs) / wallMs,
    pidsPct: a.pids.size ? (100 * (pidTicksSum / TICKS_PER_SEC) * 1000) / wallMs : Number.NaN,
    hostPct,
  };
}
