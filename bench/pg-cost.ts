/**
 * What a run costs a PostgreSQL database: the CPU of its backends (every connection to the
 * database, sampled from /proc while the run lasts, so a pool that closes at the end still counts;
 * needs the server on this host), its committed transactions and row writes (pg_stat_database),
 * HOT updates (pg_stat_user_tables). The server's own CPU (this process) is measured beside it.
 */
import { readFileSync } from "node:fs";
import pg from "pg";

const TICK_MS = 10; // USER_HZ 100 on Linux

function pidTicks(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return undefined;
  }
}

type Counters = { xacts: number; ins: number; upd: number; del: number; hot: number; tables: Map<string, number[]> };

/** The figures of one run, in total (divide by the operations). */
export type Cost = { serverMs: number; dbMs: number; xacts: number; ins: number; upd: number; del: number; hot: number; tables: Record<string, { ins: number; upd: number; hot: number; del: number }> };

/** Starts measuring the database at `url` (its own connection, left out of the figures). */
export async function costMeter(url: string): Promise<{ stop(settle?: () => Promise<void>): Promise<Cost> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const counters = async (): Promise<Counters> => {
    const r = await c.query<{ xacts: string; ins: string; upd: string; del: string; hot: string }>(
      `SELECT d.xact_commit AS xacts, d.tup_inserted AS ins, d.tup_updated AS upd, d.tup_deleted AS del,
         (SELECT coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables) AS hot
       FROM pg_stat_database d WHERE d.datname = current_database()`,
    );
    const x = r.rows[0];
    const t = await c.query<{ relname: string; ins: string; upd: string; hot: string; del: string }>("SELECT CASE WHEN schemaname = 'public' THEN relname ELSE schemaname || '.' || relname END AS relname, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot, n_tup_del AS del FROM pg_stat_user_tables");
    const tables = new Map(t.rows.map((y) => [y.relname, [Number(y.ins), Number(y.upd), Number(y.hot), Number(y.del)]]));
    return { xacts: Number(x.xacts), ins: Number(x.ins), upd: Number(x.upd), del: Number(x.del), hot: Number(x.hot), tables };
  };
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let started = true;
  const sample = async () => {
    const r = await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    for (const { pid } of r.rows) {
      const t = pidTicks(pid);
      if (t === undefined) continue;
      // A backend first seen after the start was opened during the run: all its CPU is the run's.
      if (!first.has(pid)) first.set(pid, started ? t : 0);
      last.set(pid, t);
    }
  };
  await c.query("SELECT pg_stat_clear_snapshot()");
  const c0 = await counters();
  await sample();
  started = false;
  const self0 = process.cpuUsage();
  let busy: Promise<void> | undefined;
  const timer = setInterval(() => {
    busy ??= sample()
      .catch(() => {})
      .finally(() => (busy = undefined));
  }, 100);
  return {
    /** `settle`: makes the run's connections report their statistics (they flush at most once a second). */
    async stop(settle) {
      clearInterval(timer);
      await busy;
      await sample();
      const self = process.cpuUsage(self0);
      let ticks = 0;
      for (const [pid, t0] of first) ticks += (last.get(pid) ?? t0) - t0;
      await settle?.();
      await c.query("SELECT pg_stat_clear_snapshot()");
      const c1 = await counters();
      await c.end();
      const tables: Cost["tables"] = {};
      for (const [name, v1] of c1.tables) {
        const v0 = c0.tables.get(name) ?? [0, 0, 0, 0];
        const d = v1.map((v, i) => v - v0[i]);
        if (d.some((v) => v !== 0)) tables[name] = { ins: d[0], upd: d[1], hot: d[2], del: d[3] };
      }
      return {
        tables,
        serverMs: (self.user + self.system) / 1000,
        dbMs: ticks * TICK_MS,
        xacts: c1.xacts - c0.xacts,
        ins: c1.ins - c0.ins,
        upd: c1.upd - c0.upd,
        del: c1.del - c0.del,
        hot: c1.hot - c0.hot,
      };
    },
  };
}
