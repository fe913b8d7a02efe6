import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "/work/main/src/store/pglite.ts";
import { migrate } from "/work/main/src/store/migrate.ts";
import { pino } from "pino";
const dir = await mkdtemp(join(tmpdir(), "dumpbench-"));
const db = await openPglite(join(dir, "pgdata"), { log: pino({ level: "silent" }) });
await migrate(db);
for (const n of [0, 100_000]) {
  if (n) await db.query(`INSERT INTO accounts (id, platform, login, status, secrets, key_id) SELECT lpad(to_hex(g), 24, '0'), 'vk', 'login' || g, 2, repeat('x', 200), 'k' FROM generate_series(1, ${n}) g`);
  for (let i = 0; i < 3; i++) {
    let done = false; let worst = 0;
    const probe = (async () => { while (!done) { const t = performance.now(); await db.query("SELECT 1 FROM accounts WHERE id = $1", ["x"]); worst = Math.max(worst, performance.now() - t); await new Promise((r) => setTimeout(r, 5)); } })();
    const t0 = performance.now(); const d = await db.dumpEmbedded!(); const total = performance.now() - t0; done = true; await probe;
    console.log(`${n} accounts: dump ${d.dump.length} bytes, total ${Math.round(total)} ms, longest wait of a query ${Math.round(worst)} ms`);
  }
}
await db.close();
await rm(dir, { recursive: true, force: true });
