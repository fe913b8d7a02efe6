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
import { quantile } from "./stats.ts";

export type DiagResult = { name: string; opsPerSec: number; p50Ms: number; p99Ms: number };

const COLUMNS = "id, platform, login, status, status_reason, secrets, key_id, has_phone, labels, created_at, updated_at";

/** Keeps `concurrency` calls of fn in flight for warm-up + duration; measures the window. */
export async function closedLoop(fn: (i: number) => Promise<unknown>, concurrency: number, warmupMs: number, durationMs: number): Promise<{ opsPerSec: number; p50Ms: number; p99Ms: number }> {
  const start = performance.now();
  const from = start + warmupMs;
  const to = from + durationMs;
  const lat: number[] = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < to) {
        const a = performance.now();
        await fn(i++);
        const b = performance.now();
        if (b >= from && b <= to) lat.push(b - a);
      }
    }),
  );
  return { opsPerSec: (lat.length * 1000) / durationMs, p50Ms: quantile(lat, 0.5), p99Ms: quantile(lat, 0.99) };
}

const noVault = { seal: () => { throw new Error("unused"); }, open: async () => { throw new Error("unused"); }, activeKeyId: () => "", reload: async () => {}, stop: async () => {} } as Vault;

/** Runs the component measurements on a seeded store. */
export async function diagnose(db: Db, ids: string[], url: string, concurrency: number, warmupMs: number, durationMs: number): Promise<DiagResult[]> {
  const pick = () => ids[Math.floor(Math.random() * ids.length)];
  const out: DiagResult[] = [];
  const sql = `SELECT ${COLUMNS} FROM accounts WHERE id = $1`;
  out.push({ name: "store db.query SELECT by id", ...(await closedLoop(() => db.query(sql, [pick()]), concurrency, warmupMs, durationMs)) });
  const accounts = createAccounts({ db, vault: noVault, newId: createIdGenerator() });
  out.push({ name: "accounts.get() (query + toAccount)", ...(await closedLoop(() => accounts.get(pick()), concurrency, warmupMs, durationMs)) });
  if (db.kind === "postgres" && url) {
    const pool = new pg.Pool({ connectionString: url, max: 20 });
    try {
      out.push({ name: "raw pg.Pool(20) unnamed SELECT", ...(await closedLoop(() => pool.query(sql, [pick()]), concurrency, warmupMs, durationMs)) });
      out.push({ name: "raw pg.Pool(20) prepared SELECT", ...(await closedLoop(() => pool.query({ name: "bench_get_account", text: sql, values: [pick()] }), concurrency, warmupMs, durationMs)) });
      out.push({ name: "raw pg.Pool(20) SELECT 1", ...(await closedLoop(() => pool.query("SELECT 1"), concurrency, warmupMs, durationMs)) });
    } finally {
      await pool.end();
    }
  }
  return out;
}
