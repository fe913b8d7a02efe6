import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { startHttpConnectProxy } from "./support/local-proxies.ts";
import { startTestSystem } from "./support/system.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

test("a registered account warms through the real platform service to COMPLETED, time-scaled; the CLI reads the statistics", async () => {
  // A scenario day per 1.5 real seconds.
  const sys = await startTestSystem("pglite", { env: { CONVEER_TIME_SCALE: "57600", CONVEER_SCENARIOS_DIR: `${root}scenarios`, CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000", CONVEER_PROXY_ALLOW_PRIVATE: "true" } });
  const proxy = await startHttpConnectProxy({ username: "w", password: "w" });
  try {
    await sys.proxies.addProxies({ proxies: [{ url: `http://w:w@127.0.0.1:${proxy.port}` }] });
    const vk = remoteClient(VKService, { addr: sys.addr("vk") });
    const warming = remoteClient(WarmingService, { addr: sys.addr("warming") });
    const reg = await vk.register({});
    assert.ok(reg.success, reg.error);
    const task = await warming.startWarming({ accountId: reg.accountId, scenarioId: "quick" });
    assert.equal(task.status, WarmingStatus.RUNNING);
    assert.equal(task.totalDays, 3);
    assert.equal((await sys.accounts.getAccount({ accountId: reg.accountId })).status, AccountStatus.WARMING);

    const events: string[] = [];
    const ac = new AbortController();
    const watching = (async () => {
      try {
        for await (const e of warming.streamEvents({ taskId: task.id }, { signal: ac.signal })) events.push(e.eventType);
      } catch {
        // aborted at the end
      }
    })();

    let t = task;
    const deadline = Date.now() + 60_000;
    while (t.status === WarmingStatus.RUNNING) {
      assert.ok(Date.now() < deadline, `not completed in time: ${JSON.stringify({ progress: t.progress, done: t.actionsCompleted, failed: t.actionsFailed })}`);
      await new Promise((r) => setTimeout(r, 250));
      t = await warming.getWarmingStatus({ taskId: task.id });
    }
    ac.abort();
    await watching;
    assert.equal(WarmingStatus[t.status], "COMPLETED", t.error);
    assert.equal(t.progress, 100);
    assert.equal(t.actionsFailed, 0);
    assert.ok(t.actionsCompleted >= 3 + 2 * 4, `the quick scenario plans at least 11 actions, got ${t.actionsCompleted}`);
    assert.equal((await sys.accounts.getAccount({ accountId: reg.accountId })).status, AccountStatus.ACTIVE);
    assert.ok(events.includes("action_completed") && events.includes("status_changed"), events.join(","));
    // Each action is a request through the proxy (plus feed reads for targets).
    assert.ok(proxy.requests > t.actionsCompleted, `every action went through the account's proxy (${proxy.requests} requests)`);

    const { stdout } = await run(process.execPath, [`${root}src/cli/main.ts`, "warm", "stats", "--task", task.id], {
      env: { ...process.env, WARMING_SERVICE_GRPC_ADDR: sys.addr("warming") },
    });
    assert.match(stdout, new RegExp(`completed ${t.actionsCompleted}, failed 0, success 100\\.0%`));
    assert.match(stdout, /ACTION_TYPE_VIEW_PROFILE/);
  } finally {
    await proxy.close();
    await sys.stop();
  }
});
