// The console in a real browser (chromium via playwright-core): its JS size gzipped against the
// 300 KB budget, and the time to the first rendered rows of Accounts with 100,000 accounts in the
// store, cold (assets not cached) and warm, beside a bare ListAccounts call over Connect as the
// baseline. Store: PostgreSQL when CONVEER_TEST_DATABASE_URL is set, PGlite otherwise.
// Run: npm run build:console && node bench/console.ts   (BENCH_ACCOUNTS=… to change the count)
import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { CONSOLE_DIR } from "../src/server/console-files.ts";
import { startTestSystem } from "../test/support/system.ts";
import { launch, openPage } from "../test/console/browser.ts";

const N = Number(process.env.BENCH_ACCOUNTS ?? 100_000);
const BUDGET_KB = 300;

const assets = readdirSync(`${CONSOLE_DIR}assets`);
const size = (ext: string) => assets.filter((f) => f.endsWith(ext)).reduce((n, f) => n + gzipSync(readFileSync(`${CONSOLE_DIR}assets/${f}`)).length, 0);
const jsKb = size(".js") / 1024;
console.log(`console JS gzipped: ${jsKb.toFixed(1)} KB of a ${BUDGET_KB} KB budget (${((100 * jsKb) / BUDGET_KB).toFixed(0)} %); CSS gzipped: ${(size(".css") / 1024).toFixed(1)} KB`);

const sys = await startTestSystem(process.env.CONVEER_TEST_DATABASE_URL ? "postgres" : "pglite");
const browser = await launch();
try {
  await sys.accounts.createAccount({ platform: "vk", login: "template", password: "x" });
  const t0 = performance.now();
  // Ids: 8 hex of seconds + 16 hex of the row number, time-ordered like real ids; one sealed secret copied.
  await sys.db.query(
    `INSERT INTO accounts (id, platform, login, status, secrets, key_id)
     SELECT lpad(to_hex(1700000000 + g / 1000), 8, '0') || lpad(to_hex(g), 16, '0'),
            (ARRAY['vk','telegram','mail','max'])[1 + g % 4], 'user' || g, 2 + (g % 10 = 0)::int * 3, t.secrets, t.key_id
     FROM generate_series(1, $1::int) g, (SELECT secrets, key_id FROM accounts WHERE login = 'template') t`,
    [N],
  );
  await sys.db.query("ANALYZE accounts");
  console.log(`seeded ${N.toLocaleString()} accounts in ${((performance.now() - t0) / 1000).toFixed(1)} s (${sys.db.kind})`);
  const base = `http://127.0.0.1:${sys.app.httpPort}`;
  const api = createClient(AccountService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
  const rpc: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await api.listAccounts({ pageSize: 50 });
    rpc.push(performance.now() - t);
  }
  const { context, page } = await openPage(browser);
  const firstRows = async () => {
    const t = performance.now();
    await page.goto(`${base}/accounts`);
    await page.getByRole("table", { name: "Accounts" }).getByRole("row").nth(50).waitFor();
    return performance.now() - t;
  };
  const cold = await firstRows();
  const warm: number[] = [];
  for (let i = 0; i < 5; i++) warm.push(await firstRows());
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`ListAccounts page of 50 over Connect (baseline): median ${median(rpc).toFixed(0)} ms`);
  console.log(`Accounts page, navigation to 50 rendered rows: cold ${cold.toFixed(0)} ms, warm median ${median(warm).toFixed(0)} ms (goal: under 1000 ms); ${(median(warm) / median(rpc)).toFixed(1)}× the bare call`);
  await context.close();
} finally {
  await browser.close();
  await sys.stop();
}
