/**
 * `conveer demo` as a real process on free ports: it prints the console URL, seeds a living world
 * (proxies, about 30 registered accounts, warming running, a banned account, registrations whose
 * code never came), and the console and the API show it; its temporary data directory (no
 * CONVEER_DATA_DIR) is gone once it stops.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AccountService, AccountStatus } from "../../src/gen/conveer/v1/account_pb.js";
import { RegistrationState } from "../../src/gen/conveer/v1/platform_pb.js";
import { VKService } from "../../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../../src/gen/conveer/v1/warming_pb.js";
import { killAll, runCli, systemEnv, terminate } from "../support/cli.ts";
import type { Cli } from "../support/cli.ts";
import { eventually } from "../support/grpc.ts";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const children: Cli[] = [];
let dir = "";
after(async () => {
  await killAll(children);
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("conveer demo: a world to look at, announced with the console's URL", { timeout: 180_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), "conveer-demo-test-"));
  const { env, http } = await systemEnv(join(dir, "data"));
  delete env.CONVEER_LOG_LEVEL;
  delete env.CONVEER_DATA_DIR;
  env.TMPDIR = dir;
  const cli = runCli(["demo"], env);
  children.push(cli);
  await eventually(() => cli.stdout().includes("Ready.") || !cli.running(), 150_000, "the demo to be seeded");
  assert.match(cli.stdout(), new RegExp(`Open the console: http://127.0.0.1:${http}/`));
  assert.match(cli.stdout(), /Ready\. Things to try/, cli.stdout() + cli.stderr());
  const base = `http://127.0.0.1:${http}`;
  assert.match(await (await fetch(`${base}/`)).text(), /<div id="root">/);
  const transport = createConnectTransport({ baseUrl: base, httpVersion: "1.1" });
  const accounts = createClient(AccountService, transport);
  const all = await accounts.listAccounts({ pageSize: 1 });
  assert.ok(all.totalCount >= 25n, `accounts: ${all.totalCount}`);
  assert.equal((await accounts.listAccounts({ status: AccountStatus.BANNED, pageSize: 1 })).totalCount, 1n);
  const failed = await createClient(VKService, transport).listRegistrations({ state: RegistrationState.FAILED });
  assert.ok(failed.registrations.length >= 2 && failed.registrations.every((r) => r.failedStep === "wait_code"), JSON.stringify(failed.registrations.map((r) => r.failedStep)));
  const warming = createClient(WarmingService, transport);
  const running = await warming.listWarmingTasks({ status: WarmingStatus.RUNNING });
  assert.ok(running.totalCount >= 5n, `running tasks: ${running.totalCount}`);
  // Warming really runs: actions are being done.
  await eventually(async () => (await warming.getStatistics({})).actionsCompleted > 0n, 60_000, "a warming action to be done");
  const dataDir = /data in (\S+) \(removed when the demo stops\)/.exec(cli.stdout())?.[1];
  assert.ok(dataDir?.startsWith(join(dir, "conveer-demo-")) && existsSync(dataDir), cli.stdout());
  const { code } = await terminate(cli);
  assert.equal(code, 0, cli.stderr());
  assert.ok(!existsSync(dataDir!), "the temporary data directory is removed");
});
