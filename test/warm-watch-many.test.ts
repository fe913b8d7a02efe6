/**
 * `conveer warm watch` starts with a bar for every open task (and, with --all, every task), not
 * only those among the newest 200: it seeded its bars from one ListWarmingTasks page of 200.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { killAll, runCli } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const TASKS = 230;
let sys: TestSystem;
let warming: Client<typeof WarmingService>;
const sessions: Http2SessionManager[] = [];

before(async () => {
  // No worker: the tasks stay RUNNING (there is no platform service to run their actions).
  sys = await startTestSystem("pglite", { services: ["account", "proxy", "warming"], env: { CONVEER_WARMING_WORKER: "0" } });
  warming = remoteClient(WarmingService, { addr: sys.addr("warming"), sessions });
  const accounts = Array.from({ length: TASKS + 1 }, (_, i) => ({ platform: "vk", login: `watch-${i}`, password: "pw" }));
  const imported = await sys.accounts.importAccounts({ accounts });
  assert.equal(imported.imported, TASKS + 1);
  const ids = (await sys.accounts.listAccounts({ pageSize: 1000 })).accounts.map((a) => a.id);
  for (let i = 0; i < ids.length; i += 10) {
    await Promise.all(ids.slice(i, i + 10).map((accountId) => warming.startWarming({ accountId, scenarioId: "gentle", durationDays: 1 })));
  }
  // The newest task ended: without --all it is not watched.
  const [newest] = (await warming.listWarmingTasks({ pageSize: 1 })).tasks;
  await warming.stopWarming({ taskId: newest.id, reason: "not watched" });
});
after(async () => {
  for (const s of sessions) s.abort();
  await sys?.stop();
});

/** Runs `warm watch` (stderr not a terminal) until its "connected" line; answers stderr. Fails at once if it exits before. */
async function watchUntilConnected(args: string[]): Promise<string> {
  const cli = runCli(["warm", "watch", ...args], { WARMING_SERVICE_GRPC_ADDR: sys.addr("warming") });
  try {
    await eventually(() => /connected; watching \d+ task\(s\)\n/.test(cli.stderr()) || !cli.running(), 60_000, "the connected line");
    assert.ok(cli.running(), `warm watch exited before its connected line; stderr: ${cli.stderr()}`);
    return cli.stderr();
  } finally {
    await killAll([cli]);
  }
}

test(`warm watch seeds a bar for each of ${TASKS} open tasks, and --all for every task`, async () => {
  assert.match(await watchUntilConnected([]), new RegExp(`connected; watching ${TASKS} task\\(s\\)`));
  const all = await watchUntilConnected(["--all"]);
  assert.match(all, new RegExp(`connected; watching ${TASKS + 1} task\\(s\\)`));
  assert.match(all, /: STOPPED\n/, "the ended task is shown with --all");
});
