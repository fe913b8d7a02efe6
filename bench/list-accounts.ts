// ListAccounts at a million accounts: time per page (first, middle, last) for each filter shape,
// on PostgreSQL (BENCH_DATABASE_URL or CONVEER_TEST_DATABASE_URL). Run: node bench/list-accounts.ts
import { pino } from "pino";
import { createAccounts } from "../src/accounts/accounts.ts";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { openPostgres } from "../src/store/postgres.ts";
import { migrate } from "../src/store/migrate.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { createVault } from "../src/vault/vault.ts";
import { dropPostgresDatabase, freshPostgresDatabase } from "../test/support/store.ts";

const N = Number(process.env.BENCH_ACCOUNTS ?? 1_000_000);
process.env.CONVEER_TEST_DATABASE_URL ||= process.env.BENCH_DATABASE_URL;
if (!process.env.CONVEER_TEST_DATABASE_URL) {
  console.log("list-accounts: skipped (set CONVEER_TEST_DATABASE_URL or BENCH_DATABASE_URL)");
  process.exit(0);
}
const url = await freshPostgresDatabase();
const db = openPostgres({ url, max: 4 });
try {
  await migrate(db);
  const newId = createIdGenerator();
  const vault = await createVault(db, Buffer.alloc(32, 7), newId);
  const sealed = vault.seal(JSON.stringify({ password: "x", phone: "", additional: {} }), "account:template");
  const t0 = performance.now();
  // Ids: 8 hex of seconds + 16 hex of the row number: time-ordered like real ids.
  await db.query(
    `INSERT INTO accounts (id, platform, login, status, secrets, key_id)
     SELECT lpad(to_hex(1700000000 + g / 1000), 8, '0') || lpad(to_hex(g), 16, '0'),
            (ARRAY['vk','telegram','mail','max'])[1 + g % 4], 'user' || g, 2 + (g % 10 = 0)::int * 3, $1, $2
     FROM generate_series(1, $3) g`,
    [sealed.sealed, sealed.keyId, N],
  );
  await db.query("ANALYZE accounts");
  console.log(`seeded ${N} accounts in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const accounts = createAccounts({ db, vault, newId });
  const shapes: [string, string, AccountStatus][] = [
    ["no filter", "", AccountStatus.UNSPECIFIED],
    ["platform", "vk", AccountStatus.UNSPECIFIED],
    ["status", "", AccountStatus.SUSPENDED],
    ["platform+status", "mail", AccountStatus.ACTIVE],
  ];
  console.log("filter           | page 1 ms | page 50 ms | total");
  for (const [name, platform, status] of shapes) {
    const times: number[] = [];
    let token = "";
    let total = 0;
    for (let page = 1; page <= 50; page++) {
      const t = performance.now();
      const r = await accounts.list({ platform, status, labelSelector: [], loginPrefix: "" }, 100, token);
      times.push(performance.now() - t);
      token = r.next;
      total = r.total;
    }
    console.log(`${name.padEnd(16)} | ${times[0].toFixed(2).padStart(9)} | ${times[49].toFixed(2).padStart(10)} | ${total}`);
  }
  await vault.stop();
} finally {
  await db.close();
  await dropPostgresDatabase(url);
  pino().flush?.();
}
