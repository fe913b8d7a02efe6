/**
 * Optional component ceilings (BENCH_DIAG=1), measured inside the bench process with the same
 * concurrency, to tell where GetAccount's time goes: the store query alone, the accounts domain
 * call (query + mapping), and for PostgreSQL the same SELECT through a raw pg pool, unnamed
 * (parsed and planned on every call, as the store does today) and as a named prepared statement.
 */
import pg from "pg";
import { createAccounts } from "../src/accounts/accounts.ts";
import type { Db } from "../src/store/db.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import type { Vault } from "../src/vault/vault.ts";
import { cpuBetween, snapshot } from "./cpu.ts";
import type { CpuSnapshot } from "./cpu.ts";
import { quantile } from "./stats.ts";

export type DiagResult = { name: string; opsPerSec: number; p50Ms: number; p99Ms: number; nodeUsPerOp: number; dbUsPerOp: number };

/** Pids of the PostgreSQL backends serving a database (same host only), for CPU accounting. */
export async function backendPids(url: string): Promise<number[]> {
  if (!url) return [];
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}

const COLUMNS = "id, platform, login, status, status_reason, secrets, key_id, has_phone, labels, created_at, updated_at";

/** Keeps `concurrency` calls of fn in flight for warm-up + duration; measures the window. */
export async function closedLoop(
  fn: (i: number) => Promise<unknown>,
  concurrency: number,
  warmupMs: number,
  durationMs: number,
  dbUrl = "",
): Promise<{ opsPerSec: number; p50Ms: number; p99Ms: number; nodeUsPerOp: number; dbUsPerOp: number }> {
  const start = performance.now();
  const from = start + warmupMs;
  const to = from + durationMs;
  const lat: number[] = [];
  let i = 0;
  let cpuFrom: CpuSnapshot | undefined;
  let pids: number[] = [];
  // Backend pids are looked up near the end of the warm-up, when the pool has all its connections;
  // the window's CPU snapshots are taken inline (an in-process store may starve timers).
  const t1 = setTimeout(async () => (pids = await backendPids(dbUrl).catch(() => [])), Math.max(0, warmupMs - 200));
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < to) {
        const a = performance.now();
        await fn(i++);
        const b = performance.now();
        if (b >= from && b <= to) {
          cpuFrom ??= snapshot(pids);
          lat.push(b - a);
        }
      }
    }),
  );
  clearTimeout(t1);
  const cpu = cpuFrom ? cpuBetween(cpuFrom, snapshot([...cpuFrom.pids.keys()])) : undefined;
  const opsPerSec = (lat.length * 1000) / durationMs;
  // CPU per op over the same stretch the ops were counted in (first counted op → loop end).
  const usPerOp = (pct: number | undefined) => (pct !== undefined && Number.isFinite(pct) && opsPerSec > 0 ? ((pct / 100) * 1e6) / opsPerSec : Number.NaN);
  return { opsPerSec, p50Ms: quantile(lat, 0.5), p99Ms: quantile(lat, 0.99), nodeUsPerOp: usPerOp(cpu?.selfPct), dbUsPerOp: dbUrl ? usPerOp(cpu?.pidsPct) : Number.NaN };
}

const noVault = { seal: () => { throw new Error("unused"); }, open: async () => { throw new Error("unused"); }, activeKeyId: () => "", reload: async () => {}, activateNewKey: async () => {}, stop: async () => {} } as Vault;

/** Runs the component measurements on a seeded store. */
export async function diagnose(db: Db, ids: string[], url: string, concurrency: number, warmupMs: number, durationMs: number): Promise<DiagResult[]> {
  const pick = () => ids[Math.floor(Math.random() * ids.length)];
  const out: DiagResult[] = [];
  const sql = `SELECT ${COLUMNS} FROM accounts WHERE id = $1`;
  out.push({ name: "store db.query SELECT by id", ...(await closedLoop(() => db.query(sql, [pick()]), concurrency, warmupMs, durationMs, url)) });
  const accounts = createAccounts({ db, vault: noVault, newId: createIdGenerator() });
  out.push({ name: "accounts.get() (query + toAccount)", ...(await closedLoop(() => accounts.get(pick()), concurrency, warmupMs, durationMs, url)) });
  if (db.kind === "postgres" && url) {
    const pool = new pg.Pool({ connectionString: url, max: 20 });
    try {
      out.push({ name: "raw pg.Pool(20) unnamed SELECT", ...(await closedLoop(() => pool.query(sql, [pick()]), concurrency, warmupMs, durationMs, url)) });
      out.push({ name: "raw pg.Pool(20) prepared SELECT", ...(await closedLoop(() => pool.query({ name: "bench_get_account", text: sql, values: [pick()] }), concurrency, warmupMs, durationMs, url)) });
      out.push({ name: "raw pg.Pool(20) SELECT 1", ...(await closedLoop(() => pool.query("SELECT 1"), concurrency, warmupMs, durationMs, url)) });
    } finally {
      await pool.end();
    }
  }
  return out;
}
