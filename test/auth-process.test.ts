/**
 * Auth modes through the real CLI (`node src/cli/main.ts ...` as child processes): a data
 * directory whose every token was revoked never starts open again; CONVEER_AUTH=open beyond
 * loopback refuses to start; `conveer sandbox` beyond loopback needs CONVEER_SANDBOX_TOKEN.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { eventually, freePort, rejectsWith } from "./support/grpc.ts";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

describe("auth modes of `conveer start` and `conveer sandbox` (child processes, embedded store)", () => {
  let dataDir: string;
  const sessions: Http2SessionManager[] = [];
  const children: Cli[] = [];
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "conveer-authproc-"));
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(children);
    await rm(dataDir, { recursive: true, force: true });
  });

  test("after `conveer token revoke` of the only token, a restarted server still refuses anonymous calls (GetCredentials included) and logs its mode", async () => {
    const { env, ports, http } = await systemEnv(dataDir, { CONVEER_MASTER_KEY: "44".repeat(32) });
    const create = runCli(["token", "create", "--name", "only", "--scopes", "*"], env);
    assert.equal(await create.exited, 0, create.stderr());
    const revoke = runCli(["token", "revoke", "only"], env);
    assert.equal(await revoke.exited, 0, revoke.stderr());

    const cli = runCli(["start", "--services", "account"], env);
    children.push(cli);
    await waitHealthy(cli, http);
    try {
      const anon = remoteClient(AccountService, { addr: `127.0.0.1:${ports.account}`, sessions });
      await rejectsWith(anon.listAccounts({}), Code.Unauthenticated, /conveer token create/);
      await rejectsWith(anon.getCredentials({ accountId: "0123456789abcdef01234567" }), Code.Unauthenticated);
      const mode = cli.logs().filter((l) => String(l.msg).startsWith("auth mode:"));
      assert.equal(mode.length, 1, JSON.stringify(mode));
      assert.equal(mode[0].auth, "tokens");
      assert.match(String(mode[0].msg), /no active token exists.*conveer token create/);
    } finally {
      const { code } = await terminate(cli);
      assert.equal(code, 0, cli.stderr());
    }
  });

  test("CONVEER_AUTH=open beyond loopback exits 1 before listening, naming the address and its variable", async () => {
    const port = await freePort();
    const { env } = await systemEnv(dataDir, { CONVEER_MASTER_KEY: "44".repeat(32), CONVEER_AUTH: "open" });
    const cli = runCli(["start", "--services", "account"], { ...env, ACCOUNT_SERVICE_GRPC_ADDR: `0.0.0.0:${port}` });
    children.push(cli);
    assert.equal(await Promise.race([cli.exited, new Promise((r) => setTimeout(r, 30_000, "still running"))]), 1, cli.stdout());
    assert.match(cli.stderr(), new RegExp(`refusing to start: CONVEER_AUTH=open .*0\\.0\\.0\\.0:${port} \\(ACCOUNT_SERVICE_GRPC_ADDR\\)`));
  });

  test("`conveer sandbox` beyond loopback needs CONVEER_SANDBOX_TOKEN, and then its admin and SMS endpoints require it", async () => {
    const port = await freePort();
    const env = { CONVEER_DATA_DIR: join(dataDir, "sandbox") };
    const refused = runCli(["sandbox", "--addr", `0.0.0.0:${port}`], env);
    children.push(refused);
    assert.equal(await refused.exited, 1);
    assert.match(refused.stderr(), /refusing to listen on 0\.0\.0\.0:\d+: .*CONVEER_SANDBOX_TOKEN/);
    const tokensMode = runCli(["sandbox", "--addr", `127.0.0.1:${port}`], { ...env, CONVEER_AUTH: "tokens" });
    children.push(tokensMode);
    assert.equal(await tokensMode.exited, 1);
    assert.match(tokensMode.stderr(), /CONVEER_AUTH=tokens.*CONVEER_SANDBOX_TOKEN/);

    const token = "standalone-sandbox-token-42";
    const cli = runCli(["sandbox", "--addr", `0.0.0.0:${port}`], { ...env, CONVEER_SANDBOX_TOKEN: token });
    children.push(cli);
    const base = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${base}/v1/admin/faults`).catch(() => undefined))?.status === 401, 15_000, "the sandbox to answer");
    assert.equal((await fetch(`${base}/v1/sms/balance`)).status, 401);
    assert.equal((await fetch(`${base}/v1/sms/balance`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.equal((await fetch(`${base}/v1/vk/me`)).status, 401, "the platform's own session check");
    const { code } = await terminate(cli);
    assert.equal(code, 0, cli.stderr());
  });
});
