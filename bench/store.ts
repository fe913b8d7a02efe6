/**
 * The PostgreSQL store's own cost: point queries and short transactions through `openPostgres`
 * (per-query timeout, deadline-bounded pool wait, broken-connection tracking, the store monitor)
 * beside a bare `pg.Pool` running the same prepared statements, interleaved in the same run.
 *
 *   CONVEER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node bench/store.ts
 *
 * Knobs: BENCH_STORE_MS (per run, 2000), BENCH_STORE_ROUNDS (3), BENCH_STORE_CONCURRENCY (32).
 */
import pg from "pg";
import { openPostgres } from "../src/store/postgres.ts";
import { envInt, fmt, median, table } from "./stats.ts";
import { createBenchDatabase, postgresBaseUrl } from "./system.ts";

const MS = envInt("BENCH_STORE_MS", 2000);
const ROUNDS = envInt("BENCH_STORE_ROUNDS", 3);
const CONCURRENCY = envInt("BENCH_STORE_CONCURRENCY", 32);
const POINT = "SELECT id, n FROM bench_rows WHERE id = $1";
const UPDATE = "UPDATE bench_rows SET n = n + 1 WHERE id = $1";

type Ops = { query(id: number): Promise<unknown>; transaction(id: number): Promise<unknown> };

/** Runs op from CONCURRENCY loops for MS; answers operations per second. */
async function rate(op: (id: number) => Promise<unknown>): Promise<number> {
  const end = performance.now() + MS;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = w; performance.now() < end; i += CONCURRENCY) {
        await op((i % 1000) + 1);
        n++;
      }
    }),
  );
  return n / (MS / 1000);
}

const base = postgresBaseUrl();
if (!base) {
  console.log("bench/store.ts: set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL (the embedded store has no pool to measure); skipped");
} else {
  const created = await createBenchDatabase(base);
  const size = 20;
  const bare = new pg.Pool({ connectionString: created.url, max: size });
  const db = openPostgres({ url: created.url, max: size });
  try {
    await db.query("CREATE TABLE bench_rows (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)");
    await db.query("INSERT INTO bench_rows (id) SELECT generate_series(1, 1000)");
    const targets: Record<string, Ops> = {
      "bare pg.Pool": {
        query: (id) => bare.query({ name: "bench_point", text: POINT, values: [id] }),
        async transaction(id) {
          const c = await bare.connect();
          try {
            await c.query("BEGIN");
            await c.query({ name: "bench_update", text: UPDATE, values: [id] });
            await c.query("COMMIT");
          } finally {
            c.release();
          }
        },
      },
      openPostgres: {
        query: (id) => db.query(POINT, [id]),
        transaction: (id) => db.transaction((tx) => tx.query(UPDATE, [id])),
      },
    };
    const results: Record<string, Record<string, number[]>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, t] of Object.entries(targets)) {
        for (const kind of ["query", "transaction"] as const) {
          ((results[kind] ??= {})[name] ??= []).push(await rate((id) => t[kind](id)));
        }
      }
    }
    const rows = [["operation", "bare pg.Pool /s", "openPostgres /s", "ratio"]];
    for (const kind of ["query", "transaction"]) {
      const b = median(results[kind]["bare pg.Pool"]);
      const o = median(results[kind].openPostgres);
      rows.push([kind === "query" ? "point SELECT" : "BEGIN; UPDATE; COMMIT", fmt(b), fmt(o), fmt(o / b, 2)]);
    }
    console.log(`\nstore path on PostgreSQL: ${CONCURRENCY} loops, pool ${size}, medians of ${ROUNDS} runs of ${MS} ms, interleaved\n`);
    console.log(table(rows));
  } finally {
    await db.close();
    await bare.end();
    await created.drop();
  }
}
