/**
 * The operator console in a real browser (chromium via playwright-core) against a real
 * `conveer start` in tokens mode, with the sandbox, local proxies and warming at a high time
 * scale: sign-in, the Overview, the Accounts table with its filters in the URL, an account's
 * detail and its actions (status change seen in the history with the token's name, credentials
 * revealed), a live StreamEvents update, a read-only token, and 390 px / dark screenshots.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";
import { AccountService, AccountStatus } from "../../src/gen/conveer/v1/account_pb.js";
import { AdminService } from "../../src/gen/conveer/v1/admin_pb.js";
import { ProxyService } from "../../src/gen/conveer/v1/proxy_pb.js";
import { WarmingService } from "../../src/gen/conveer/v1/warming_pb.js";
import { runCli } from "../support/cli.ts";
import { eventually } from "../support/grpc.ts";
import { setUp } from "../support/warming-system.ts";
import type { Setup } from "../support/warming-system.ts";
import { startHttpConnectProxy } from "../support/local-proxies.ts";
import { launch, openPage, shot } from "./browser.ts";

/** Connect clients over the HTTP port, as the console calls it, with a token. */
function clients(base: string, token: string) {
  const bearer: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req));
  const transport = createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [bearer] });
  return {
    accounts: createClient(AccountService, transport),
    proxies: createClient(ProxyService, transport),
    warming: createClient(WarmingService, transport),
    admin: createClient(AdminService, transport),
  };
}

async function createToken(dataDir: string, name: string, scopes: string): Promise<string> {
  const cli = runCli(["token", "create", "--name", name, "--scopes", scopes], { CONVEER_DATA_DIR: dataDir, CONVEER_MASTER_KEY: "33".repeat(32) });
  assert.equal(await cli.exited, 0, cli.stderr());
  return cli.stdout().trim();
}

async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(base + "/");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
}

describe("console in a browser", { timeout: 240_000 }, () => {
  let s: Setup;
  let base = "";
  let browser: Browser;
  let admin: ReturnType<typeof clients>;
  let adminToken = "";
  let viewerToken = "";
  const ids: string[] = [];
  let sys: Awaited<ReturnType<Setup["start"]>>;
  /** Secrets that passed through the console: none may reach the server's log. */
  const secrets: string[] = [];

  before(async () => {
    s = await setUp("pglite");
    const dataDir = join(s.dir, "console");
    adminToken = await createToken(dataDir, "admin", "*");
    viewerToken = await createToken(dataDir, "viewer", "accounts:read,proxies:read,warming:read,sms:read,platforms:read");
    // Info level: the log checked at the end for secrets holds what an operator's would.
    sys = await s.start("console", dataDir, { CONVEER_LOG_LEVEL: "info" });
    base = `http://127.0.0.1:${sys.http}`;
    admin = clients(base, adminToken);
    const items = [
      ...[0, 1, 2].map((i) => ({ platform: "vk" as const, login: `cons_vk_${i}`, password: `pw-vk-${i}`, labels: { team: i === 0 ? "red" : "blue" } })),
      ...[0, 1].map((i) => ({ platform: "telegram" as const, login: `cons_tg_${i}`, password: `pw-tg-${i}`, labels: { team: "red" } })),
    ];
    for (const a of items) s.sandbox.addUser(a.platform, a.login, a.password);
    const r = await admin.accounts.importAccounts({ accounts: items });
    assert.equal(r.imported, items.length, JSON.stringify(r.results));
    ids.push(...r.results.map((x) => x.accountId));
    const added = await admin.proxies.addProxies({ proxies: s.proxies.map((p) => ({ url: p.url, capacity: 10 })) });
    for (const x of added.results) assert.ok(x.proxyId, x.error);
    assert.equal((await admin.admin.whoAmI({})).tokenName, "admin");
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  test("the HTTP port serves the console: index.html for client routes with its own CSP, hashed assets, RPCs and /healthz untouched", async () => {
    const index = await fetch(`${base}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type") ?? "", /text\/html/);
    const csp = index.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await index.text();
    assert.doesNotMatch(html, /<script>(?!<\/script>)/, "no inline script");
    const deep = await fetch(`${base}/accounts/0123456789abcdef01234567?platform=vk`);
    assert.equal(deep.status, 200);
    assert.equal(await deep.text(), html);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1];
    const js = await fetch(base + asset, { headers: { "accept-encoding": "gzip" } });
    assert.equal(js.status, 200);
    assert.match(js.headers.get("cache-control") ?? "", /immutable/);
    assert.match(js.headers.get("content-type") ?? "", /javascript/);
    assert.equal((await fetch(`${base}/assets/missing.js`)).status, 404);
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.match(health.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    // An RPC path is never the console's, even on GET.
    assert.notEqual((await fetch(`${base}/conveer.AccountService/NoSuchMethod`)).headers.get("content-type"), "text/html; charset=utf-8");
  });

  test("sign-in: the server's refusal is shown, a wrong token is refused, the right one opens the Overview; the token stays in sessionStorage only", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await page.goto(base + "/");
      await page.getByText(/This server needs an API token/).waitFor();
      await shot(page, "sign-in");
      await page.getByLabel("API token").fill("not-a-token");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText(/The server refused this token: .*unknown or revoked/).waitFor();
      await page.getByLabel("API token").fill(adminToken);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Overview" }).waitFor();
      // vk × ACTIVE: the three imported vk accounts.
      const matrix = page.getByRole("table", { name: "Accounts by platform and status" });
      await matrix.getByRole("row", { name: /^vk/ }).getByRole("link", { name: "3" }).waitFor();
      await page.getByTestId("identity").getByText("admin").waitFor();
      const stored = await page.evaluate(() => ({ session: sessionStorage.getItem("conveer.token"), local: localStorage.length, cookie: document.cookie, url: location.href }));
      assert.equal(stored.session, adminToken);
      assert.equal(stored.local, 0);
      assert.equal(stored.cookie, "");
      assert.doesNotMatch(stored.url, new RegExp(adminToken));
      await shot(page, "overview");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Accounts: filters kept in the URL survive a reload; a status change shows in the history with the token's name; credentials are revealed", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await page.clock.install();
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Accounts" }).click();
      const table = page.getByRole("table", { name: "Accounts" });
      await table.getByRole("link", { name: "cons_tg_0" }).waitFor();
      await page.getByLabel("Platform").selectOption("vk");
      await page.waitForURL(/platform=vk/);
      await page.getByText("3 accounts match").waitFor();
      await page.getByLabel("Login starts with").fill("cons_vk_1");
      await page.getByLabel("Login starts with").press("Enter");
      await page.waitForURL(/login=cons_vk_1/);
      await page.getByText("1 account match").waitFor();
      await page.reload();
      await page.getByText("1 account match").waitFor();
      assert.equal(await page.getByLabel("Login starts with").inputValue(), "cons_vk_1");
      assert.equal(await table.getByRole("row").count(), 2);
      await shot(page, "accounts");

      await table.getByRole("link", { name: "cons_vk_1" }).click();
      await page.getByRole("heading", { name: /cons_vk_1/ }).waitFor();
      const change = page.getByRole("form", { name: "Change status" });
      // Only the transitions the server allows from ACTIVE are offered.
      assert.deepEqual(await change.getByLabel("New status").locator("option").allTextContents(), ["choose…", "WARMING", "BANNED", "SUSPENDED", "DELETED"]);
      await change.getByLabel("New status").selectOption("SUSPENDED");
      await change.getByLabel("Reason (required)").fill("console test");
      await change.getByRole("button", { name: "Change status" }).click();
      await page.getByRole("list", { name: "Status history" }).getByText(/SUSPENDED.*by admin.*console test/).waitFor();
      assert.equal((await admin.accounts.getAccount({ accountId: ids[1] })).statusReason, "console test");

      await page.getByRole("button", { name: "Reveal credentials" }).click();
      await page.getByTestId("credentials").getByText("pw-vk-1").waitFor();
      await page.getByText(/Hidden again in \d+ s/).waitFor();
      // The audit view of the account: the reveal and the status change, each under the token's name.
      const audit = page.getByRole("heading", { name: "Audit entries" }).locator("..");
      await audit.getByText(/credentials\.read by admin/).waitFor();
      await audit.getByText(/account\.status by admin/).waitFor();
      await shot(page, "account-detail");
      // Hidden again after 30 s, without a click.
      await page.clock.fastForward(31_000);
      await page.getByText("pw-vk-1").waitFor({ state: "detached" });
      await page.getByRole("button", { name: "Reveal credentials" }).waitFor();

      // Start warming for selected rows: the server refuses a SUSPENDED account, and says why.
      await page.goto(`${base}/accounts?platform=vk&login=cons_vk_1`);
      await page.getByLabel("Select cons_vk_1").check();
      const startSelected = page.getByRole("form", { name: "Start warming for the selected accounts" });
      await startSelected.getByRole("button", { name: "Start 1" }).click();
      await page.getByText(`${ids[1]}: account ${ids[1]} is ACCOUNT_STATUS_SUSPENDED; warming needs ACCOUNT_STATUS_ACTIVE`).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Accounts: imported by pasting lines (a refused line listed with the server's reason, no password shown), found by their label; one deleted from its page", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Accounts" }).click();
      await page.getByText("Import accounts").click();
      const form = page.getByRole("form", { name: "Import accounts" });
      await form.getByLabel("Accounts to import, one a line").fill("mail,cons_mail_0,pw-mail-0\nmyspace,cons_bad,pw-bad\nmax,cons_max_0,pw-max-0");
      await form.getByLabel("Labels for all (key=value, …)").fill("src=console");
      await form.getByRole("button", { name: "Import 3" }).click();
      await page.getByText("2 imported, 1 refused.").waitFor();
      const refused = page.getByRole("list", { name: "Refused lines" });
      await refused.getByText(/line 2 \(myspace,cons_bad\): .*platform/).waitFor();
      assert.equal(await page.getByText("pw-bad").count(), 0, "a refused line's password is not shown");
      assert.equal(await form.getByLabel("Accounts to import, one a line").inputValue(), "", "the pasted passwords are cleared once sent");
      await page.getByLabel("Labels (key=value, …)", { exact: true }).fill("src=console");
      await page.getByLabel("Labels (key=value, …)", { exact: true }).press("Enter");
      await page.waitForURL(/label=src/);
      await page.getByText("2 accounts match").waitFor();
      const table = page.getByRole("table", { name: "Accounts" });
      await table.getByRole("link", { name: "cons_mail_0" }).waitFor();
      await table.getByRole("link", { name: "cons_max_0" }).waitFor();
      const imported = await admin.accounts.listAccounts({ labelSelector: ["src=console"] });
      assert.deepEqual(imported.accounts.map((a) => a.login).sort(), ["cons_mail_0", "cons_max_0"]);

      // Delete one from its page: a reason, then a confirming click; the audit shows it under the token's name.
      await table.getByRole("link", { name: "cons_max_0" }).click();
      await page.getByRole("heading", { name: /cons_max_0/ }).waitFor();
      const del = page.getByRole("form", { name: "Delete account" });
      await del.getByLabel("Delete reason (required)").fill("imported by mistake");
      await del.getByRole("button", { name: "Delete account" }).click();
      await del.getByRole("button", { name: "Confirm delete" }).click();
      await page.getByText(/^Deleted\./).waitFor();
      await page.getByRole("list", { name: "Status history" }).getByText(/DELETED.*by admin.*imported by mistake/).waitFor();
      await page.getByRole("heading", { name: "Audit entries" }).locator("..").getByText(/account\.delete by admin/).waitFor();
      const gone = imported.accounts.find((a) => a.login === "cons_max_0")!;
      assert.equal((await admin.accounts.getAccount({ accountId: gone.id })).status, AccountStatus.DELETED);
      // A DELETED account's page offers to finish a delete cut short (deleting again lets go of anything still held).
      await page.getByRole("button", { name: "Let go of what it still holds" }).click();
      await page.getByText(/It held nothing more\./).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Overview: warming actions per minute over the last hour, those recorded before the page opened included, then live", async () => {
    const hourTotal = async () => (await admin.warming.getActionRate({})).minutes.reduce((n, m) => n + Number(m.completed + m.failed), 0);
    assert.equal(await hourTotal(), 0, "no warming yet");
    // 12 actions over about 16 s (scenario days of 4 s): some recorded before the page opens, the rest while it is open.
    await admin.warming.startWarming({ accountId: ids[0], scenarioId: "procs", durationDays: 4 });
    await eventually(async () => (await hourTotal()) >= 2, 30_000, "actions recorded before the page opened");
    const before = await hourTotal();
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      const total = page.getByTestId("actions-last-hour");
      await total.waitFor();
      const shown = Number(await total.getAttribute("data-total"));
      assert.ok(shown >= before, `the page's first answer holds the ${before} actions recorded before it opened (shows ${shown})`);
      await page.getByTestId("stream-state").getByText("Stream: live").waitFor();
      // Live: the rest of the task's actions arrive without a reload.
      await page.locator('[data-testid="actions-last-hour"][data-total="12"]').waitFor({ timeout: 60_000 });
      assert.equal(await hourTotal(), 12);
      assert.equal(await page.locator(".bars span").count(), 60, "a bar per minute of the hour");
      await shot(page, "overview-live");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Proxies: pasted URLs are added or refused per line, a check runs through the proxy, a removal says what moved", async () => {
    const extra = await startHttpConnectProxy();
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Proxies" }).click();
      await page.getByText("2 proxies match").waitFor();
      const first = page.getByRole("table", { name: "Proxies" }).getByRole("row").nth(1);
      await first.getByText(/^(not checked yet|\d+ ms, .+|failed .+)$/).waitFor();
      await page.getByText("Add proxies").click();
      await page.getByLabel(/Proxy URLs/).fill(`ftp://nowhere:21\n${extra.url}`);
      await page.getByLabel("Tags (comma-separated)").fill("pasted");
      await page.getByRole("button", { name: "Add 2" }).click();
      await page.getByText("1 added, 1 refused.").waitFor();
      await page.getByRole("list", { name: "Refused lines" }).getByText(/line 1 \(.*ftp:\/\/nowhere:21.*\): .+/).waitFor();
      assert.equal(await page.getByLabel(/Proxy URLs/).inputValue(), "", "the pasted URLs (and their passwords) are cleared once sent");
      await page.getByLabel("Tag", { exact: true }).fill("pasted");
      await page.getByLabel("Tag", { exact: true }).press("Enter");
      await page.waitForURL(/tag=pasted/);
      await page.getByText("1 proxy match").waitFor();
      const row = page.getByRole("table", { name: "Proxies" }).getByRole("row").nth(1);
      await row.getByRole("button", { name: "Check now" }).click();
      await row.getByText(/healthy, \d+ ms to /).waitFor();
      // The listing carries the check too: its latency and when it ran.
      await row.getByRole("cell").filter({ hasText: /^\d+ ms, / }).waitFor();
      await shot(page, "proxies");
      await row.getByRole("button", { name: "Remove" }).click();
      await page.getByText("No proxies match.").waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      await extra.close();
    }
  });

  test("Warming: started from the page, progress reaches 100 % live; pause and resume one task; pause, resume and stop a filtered set", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Warming" }).click();
      await page.getByTestId("stream-state").getByText("Live updates: live").waitFor();
      await page.getByText("Start warming").click();
      const start = page.getByRole("form", { name: "Start warming" });
      await start.getByLabel("Account ids, one a line").fill(ids[2]);
      await start.getByLabel("Scenario").selectOption("procs");
      await start.getByRole("button", { name: "Start 1" }).click();
      await page.getByText(new RegExp(`${ids[2]}: started task`)).waitFor();
      const row = (login: string) => page.getByRole("table", { name: "Warming tasks" }).getByRole("row").filter({ has: page.getByRole("link", { name: login, exact: true }) });
      // Two scenario days of 3 actions at 21600× real time: about 8 s to the end, seen through StreamEvents.
      await row("cons_vk_2").getByTestId("progress").getByText("100 %").waitFor({ timeout: 60_000 });
      await shot(page, "warming");
      // The task's own page: its stored events replayed, and its plan against what was done.
      await page.getByRole("link", { name: "procs task of cons_vk_2" }).click();
      await page.getByRole("heading", { name: /Warming task .* COMPLETED/ }).waitFor();
      await page.getByRole("list", { name: "Task events" }).getByText("action_completed").nth(5).waitFor();
      await page.getByRole("img", { name: "Planned against done, per day" }).locator("canvas").waitFor();
      await shot(page, "warming-task");
      await page.goBack();

      // Long tasks (60 days) to pause, resume and stop.
      for (const accountId of [ids[3], ids[4]]) await admin.warming.startWarming({ accountId, scenarioId: "procs", durationDays: 60 });
      await page.reload();
      await row("cons_tg_0").getByRole("button", { name: "Pause" }).click();
      await row("cons_tg_0").getByText("PAUSED", { exact: true }).waitFor();
      await row("cons_tg_0").getByRole("button", { name: "Resume" }).click();
      await row("cons_tg_0").getByText("RUNNING").waitFor();
      // Every task of a filtered set (the two telegram ones), paused then resumed.
      await page.getByLabel("Platform").selectOption("telegram");
      await page.waitForURL(/platform=telegram/);
      await page.getByText("2 tasks match").waitFor();
      await page.getByRole("button", { name: "Pause all" }).click();
      await page.getByTestId("bulk-report").getByText("Pause: 2 of 2 done").waitFor();
      await row("cons_tg_0").getByText("PAUSED", { exact: true }).waitFor();
      await row("cons_tg_1").getByText("PAUSED", { exact: true }).waitFor();
      assert.deepEqual((await admin.warming.listWarmingTasks({ platform: "telegram" })).tasks.map((t) => t.status), [3, 3], "both telegram tasks PAUSED");
      await page.getByRole("button", { name: "Resume all" }).click();
      await page.getByTestId("bulk-report").getByText("Resume: 2 of 2 done").waitFor();
      await row("cons_tg_1").getByText("RUNNING", { exact: true }).waitFor();
      await page.getByLabel("Status").selectOption("RUNNING");
      await page.waitForURL(/platform=telegram.*status=RUNNING|status=RUNNING.*platform=telegram/);
      await page.getByText("2 tasks match").waitFor();
      await page.getByRole("button", { name: "Stop all" }).click();
      await page.getByTestId("bulk-report").getByText("Stop: 2 of 2 done").waitFor();
      await page.getByText("0 tasks match").waitFor();
      const left = await admin.warming.listWarmingTasks({ platform: "telegram" });
      assert.deepEqual(left.tasks.map((t) => t.status), [6, 6], "both telegram tasks STOPPED");
      // The scenario filter, kept in the URL like the others.
      await page.goto(`${base}/warming`);
      const scenario = page.getByRole("search").getByLabel("Scenario");
      await scenario.fill("procs");
      await scenario.press("Enter");
      await page.waitForURL(/scenario=procs/);
      await page.getByText(`${(await admin.warming.listWarmingTasks({ scenarioId: "procs" })).totalCount} tasks match`).waitFor();
      await scenario.fill("no-such-scenario");
      await scenario.press("Enter");
      await page.getByText("No warming tasks match.").waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Scenarios and Statistics: a day plan and GetStatistics drawn as uPlot charts", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Scenarios" }).click();
      await page.getByRole("link", { name: "Process test" }).click();
      await page.waitForURL(/\/scenarios\/procs$/);
      await page.getByRole("img", { name: "procs: planned actions per day" }).locator("canvas").waitFor();
      await page.getByText(/days 1-2, 0–24 h UTC: view_profile 2, view_stories 1/).waitFor();
      await shot(page, "scenario");
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Statistics" }).click();
      await page.getByLabel("Platform").selectOption("vk");
      await page.waitForURL(/platform=vk/);
      // The vk task that ran to its end: 6 actions done.
      await page.getByTestId("actions-completed").getByText(/^([6-9]|\d\d+)$/).waitFor();
      await page.getByRole("img", { name: "Actions per day" }).locator("canvas").waitFor();
      await page.getByRole("table", { name: "Actions by type" }).getByText("VIEW_PROFILE").or(page.getByRole("table", { name: "Actions by type" }).getByText("view_profile")).first().waitFor();
      // Each type per day (one GetStatistics per day) adds up to the type's total over the range.
      const totals = await admin.warming.getStatistics({ platform: "vk" });
      const perDay = (await page.getByTestId("by-type-per-day").textContent())!;
      for (const t of totals.byActionType) {
        const name = t.actionType.replace("ACTION_TYPE_", "").toLowerCase();
        const days = new RegExp(`${name}: ([\\d, ]+)`).exec(perDay);
        assert.ok(days, `${name} in ${perDay}`);
        assert.equal(days[1].split(",").reduce((n, x) => n + Number(x), 0), Number(t.completed), `${name}: ${perDay}`);
      }
      await page.getByRole("img", { name: /Actions completed per day by type/ }).locator("canvas").waitFor();
      await shot(page, "statistics");
      // A range from this browser's clock: the test server's scenario clock runs 21600 times faster, so its actions lie days ahead.
      await page.getByLabel("Range").selectOption("24h");
      await page.waitForURL(/range=24h/);
      await page.getByText("No actions in this range.").waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Admin: a token created (its secret shown once, and it works), revoked (and refused); the audit log filtered by action and day", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Admin" }).click();
      const tokens = page.getByRole("list", { name: "Tokens" });
      await tokens.getByText("viewer").waitFor();
      const form = page.getByRole("form", { name: "Create a token" });
      await form.getByLabel("Name").fill("ops-console");
      await form.getByLabel("warming:read", { exact: true }).check();
      await form.getByRole("button", { name: "Create token" }).click();
      const secret = (await page.locator(".secret code").textContent())!.trim();
      secrets.push(secret);
      assert.ok(secret.length >= 20, secret);
      const asOps = clients(base, secret);
      assert.deepEqual(await asOps.admin.whoAmI({}).then((w) => [w.tokenName, w.scopes]), ["ops-console", ["warming:read"]]);
      await tokens.getByText(/ops-console.*warming:read/).waitFor();
      await shot(page, "admin");
      // Shown once: gone after the acknowledgement, and nowhere in the page's storage.
      await page.getByRole("button", { name: "I have copied it" }).click();
      await page.locator(".secret").waitFor({ state: "detached" });
      assert.equal(await page.getByText(secret).count(), 0);
      assert.doesNotMatch(await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }) + location.href), new RegExp(secret));
      await tokens.getByRole("listitem").filter({ hasText: "ops-console" }).getByRole("button", { name: "Revoke" }).click();
      await tokens.getByRole("listitem").filter({ hasText: "ops-console" }).getByText(/revoked/).waitFor();
      // Refused once the servers' token caches expire (5 s: src/auth/tokens.ts).
      await eventually(() => asOps.admin.whoAmI({}).then(() => false, (err: { code?: Code }) => err.code === Code.Unauthenticated), 15_000, "the revoked token to be refused");

      const action = page.getByLabel("Action (exact, or a prefix ending in .)");
      await action.fill("token.");
      await action.press("Enter");
      await page.waitForURL(/action=token\./);
      const log = page.getByRole("table", { name: "Audit log" });
      await log.getByRole("row").filter({ hasText: "token.revoke" }).filter({ hasText: "ops-console" }).waitFor();
      await log.getByRole("row").filter({ hasText: "token.create" }).filter({ hasText: "ops-console" }).waitFor();
      await action.fill("credentials.read");
      await action.press("Enter");
      await page.waitForURL(/action=credentials\.read/);
      await log.getByRole("row").filter({ hasText: "credentials.read" }).filter({ hasText: "admin" }).first().waitFor();
      // Whole UTC days: today holds the reveal, yesterday nothing.
      const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
      await page.getByLabel("From (UTC day)").fill(day(0));
      await page.waitForURL(new RegExp(`from=${day(0)}`));
      await log.getByRole("row").filter({ hasText: "credentials.read" }).first().waitFor();
      await page.getByLabel("From (UTC day)").fill(day(-1));
      await page.getByLabel("To (UTC day)").fill(day(-1));
      await page.waitForURL(new RegExp(`to=${day(-1)}`));
      await page.getByText("No audit entries match.").waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Registrations: a batch of 5 on the sandbox, watched to its end, listed, and one opened", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name: "Registrations" }).click();
      await page.getByText("Start a batch").click();
      const form = page.getByRole("form", { name: "Start a batch" });
      await form.getByLabel("Count").fill("5");
      await form.getByRole("button", { name: "Register" }).click();
      await page.getByTestId("batch").getByText("5 of 5 ended: 5 succeeded, 0 failed").waitFor({ timeout: 90_000 });
      await page.getByText("5 registrations match").waitFor();
      const table = page.getByRole("table", { name: "Registrations" });
      assert.equal(await table.getByText("SUCCEEDED").count(), 5);
      // The batch carries one id (like the CLI's register); its link filters the list to it, in the URL.
      const batch = (await page.getByTestId("batch").locator("code").textContent()) ?? "";
      assert.match(batch, /^vk-\d{8}T\d{4}-[0-9a-f]{4}$/);
      await page.getByTestId("batch").getByRole("button", { name: "show its registrations" }).click();
      await page.waitForURL((u) => u.searchParams.get("batch") === batch);
      assert.equal(await page.getByRole("textbox", { name: "Batch" }).inputValue(), batch);
      await page.getByText("5 registrations match").waitFor();
      await page.getByRole("textbox", { name: "Batch" }).fill("vk-19990101T0000-0000");
      await page.getByRole("textbox", { name: "Batch" }).press("Enter");
      await page.getByText("0 registrations match").waitFor();
      await page.getByRole("textbox", { name: "Batch" }).fill(batch);
      await page.getByRole("textbox", { name: "Batch" }).press("Enter");
      await page.getByText("5 registrations match").waitFor();
      await shot(page, "registrations");
      await table.getByRole("link").first().click();
      await page.getByRole("heading", { name: /Registration .* SUCCEEDED/ }).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("Overview after the journey: the proxy pool, the SMS balance and the registrations funnel of the last 24 h", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      const card = (name: string) => page.getByRole("heading", { name }).locator("..");
      const field = (name: string, dt: string) => card(name).locator(`dt:text-is("${dt}") + dd`);
      await field("Proxy pool", "Proxies").getByText("2", { exact: true }).waitFor();
      const healthy = Number(await field("Proxy pool", "Healthy").textContent());
      const unhealthy = Number(await field("Proxy pool", "Unhealthy").textContent());
      assert.equal(healthy + unhealthy, 2);
      const listed = await admin.proxies.listProxies({});
      const used = listed.proxies.reduce((n, p) => n + p.allocated, 0);
      await field("Proxy pool", "Slots used").getByText(`${used} of 20`).waitFor();
      await card("SMS balance").getByText(/\d.*\(.+\)/).waitFor();
      // The batch of 5 registered on vk from the Registrations page.
      await card("Registrations, last 24 h").getByText(/^vk: 5 started, 5 succeeded, 0 running$/).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("a read-only token: write actions on every page are disabled, each naming the scope it needs", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, viewerToken);
      await page.goto(`${base}/accounts/${ids[2]}`);
      await page.getByRole("heading", { name: /cons_vk_2/ }).waitFor();
      const reveal = page.getByRole("button", { name: "Reveal credentials" });
      // The scopes arrive with WhoAmI, after the page's first paint: wait for their notes first.
      await page.getByText("needs scope credentials:read").waitFor();
      await page.getByText("needs scope accounts:admin").waitFor();
      assert.equal(await reveal.isDisabled(), true);
      const disabled = async (path: string, button: string, scope: string, open?: string) => {
        await page.goto(base + path);
        if (open) await page.getByText(open, { exact: true }).click();
        // The scopes arrive with WhoAmI after the first paint: wait for the button's note, then check it is disabled.
        const b = page.getByRole("button", { name: button, exact: true }).and(page.locator(`[title="needs scope ${scope}"]`)).first();
        await b.waitFor();
        assert.equal(await b.isDisabled(), true, `${path}: ${button}`);
        await b.locator("xpath=..").getByText(`needs scope ${scope}`).waitFor();
      };
      await disabled("/warming", "Stop all", "warming:write");
      await disabled("/proxies", "Check now", "proxies:write");
      await disabled("/registrations", "Register", "platforms:write", "Start a batch");
      await disabled("/admin", "Create token", "admin");
      // What the token may not even read is the server's refusal, shown as it is.
      await page.getByText(/lacks scope "admin"/).first().waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("axe on every page, light and dark: no serious or critical violation", { timeout: 240_000 }, async () => {
    for (const dark of [false, true]) {
      const { context, page, problems } = await openPage(browser, { dark });
      try {
        await signIn(page, base, adminToken);
        const pages = ["/", "/accounts", `/accounts/${ids[0]}`, "/proxies", "/warming", "/registrations", "/scenarios", "/scenarios/procs", "/statistics", "/admin"];
        for (const path of pages) {
          await page.goto(base + path);
          await page.locator("main h1").first().waitFor();
          // Every card loaded (pages with a live stream never reach "network idle").
          await page.waitForFunction(() => document.querySelectorAll(".loading").length === 0);
          const r = await new AxeBuilder({ page }).analyze();
          const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
          assert.deepEqual(
            bad.map((v) => `${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")})`),
            [],
            `${path}${dark ? " (dark)" : ""}`,
          );
        }
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    }
  });

  test("390 px wide and dark: no page wider than the screen but the tables' own scroll", async () => {
    const { context, page, problems } = await openPage(browser, { narrow: true, dark: true });
    try {
      await signIn(page, base, adminToken);
      await shot(page, "overview-390-dark");
      const pages = ["/", "/accounts?platform=vk", `/accounts/${ids[0]}`, "/proxies", "/warming", "/registrations", "/scenarios/procs", "/statistics", "/admin"];
      for (const path of pages) {
        await page.goto(base + path);
        await page.locator("main h1").first().waitFor();
        await page.waitForFunction(() => document.querySelectorAll(".loading").length === 0);
        const wide = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(wide <= 390, `${path} scrolls sideways: ${wide} px`);
      }
      await page.goto(`${base}/accounts?platform=vk`);
      await page.getByText(/accounts? match/).waitFor();
      await shot(page, "accounts-390-dark");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("keyboard only: skip link, the navigation, a filter and a row's link, each with a visible focus", async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await signIn(page, base, adminToken);
      const focused = () => page.evaluate(() => {
        const el = document.activeElement as HTMLElement;
        const style = getComputedStyle(el);
        return { text: (el.textContent ?? "").trim(), tag: el.tagName, name: el.getAttribute("name") ?? el.id, outline: style.outlineStyle !== "none" && style.outlineWidth !== "0px" };
      });
      /** Tabs forward until `match` holds for the focused element (at most 60 presses). */
      const tabTo = async (what: string, match: (f: Awaited<ReturnType<typeof focused>>) => boolean) => {
        for (let i = 0; i < 60; i++) {
          await page.keyboard.press("Tab");
          const f = await focused();
          if (match(f)) {
            assert.ok(f.outline, `${what} has no visible focus`);
            return;
          }
        }
        assert.fail(`Tab never reached ${what}`);
      };
      await page.locator("body").focus();
      await tabTo("the skip link", (f) => f.text === "Skip to content");
      await page.keyboard.press("Enter");
      assert.equal((await focused()).name, "main");
      await page.goto(base + "/");
      await page.getByRole("heading", { name: "Overview" }).waitFor();
      await tabTo("the Accounts link", (f) => f.tag === "A" && f.text === "Accounts");
      await page.keyboard.press("Enter");
      await page.waitForURL(/\/accounts$/);
      await tabTo("the login filter", (f) => f.name === "login");
      await page.keyboard.type("cons_tg_1");
      await page.keyboard.press("Enter");
      await page.getByText("1 account match").waitFor();
      await tabTo("the row's link", (f) => f.tag === "A" && f.text === "cons_tg_1");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: /cons_tg_1/ }).waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("no secret in the server's log: tokens, created secrets, revealed or imported passwords", () => {
    const log = sys.cli.stdout() + sys.cli.stderr();
    assert.ok(sys.cli.logs().length > 0, "the server logged at info level");
    for (const x of [adminToken, viewerToken, ...secrets, "pw-vk-1", "pw-mail-0", "pw-max-0"]) assert.ok(!log.includes(x), `the log holds ${x.slice(0, 6)}…`);
  });
});
