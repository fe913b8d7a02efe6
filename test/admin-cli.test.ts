/**
 * `conveer token`, `conveer keys rotate` and `conveer audit` against a running `conveer start` on
 * the EMBEDDED store (which holds the data directory's lock, so the direct-store path cannot
 * run): they go through AdminService on the HTTP port. Once the server is stopped they fall back
 * to the store itself, saying so.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

const N = 40;

async function finished(cli: Cli): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

describe("admin commands against `conveer start` on the embedded store", () => {
  const children: Cli[] = [];
  let dir = "";
  after(async () => {
    await killAll(children);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("token create, keys rotate (progress to the total) and audit --output json go through the server; after it stops, the store directly", async () => {
    dir = await mkdtemp(join(tmpdir(), "conveer-admin-cli-"));
    const { env, http } = await systemEnv(join(dir, "data"), { CONVEER_DB_POOL_SIZE: "12" });
    const server = runCli(["start", "--services", "account"], env);
    children.push(server);
    await waitHealthy(server, http);
    const base = `http://127.0.0.1:${http}`;

    // Open (automatic) mode: WhoAmI answers the anonymous principal; accounts are imported over Connect JSON.
    const who = await fetch(`${base}/conveer.AdminService/WhoAmI`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.deepEqual(await who.json(), { tokenName: "open-mode", scopes: ["*"], open: true });
    const accounts = Array.from({ length: N }, (_, i) => ({ platform: "vk", login: `cli-${i}`, password: `pw-${i}` }));
    const imp = await fetch(`${base}/conveer.AccountService/ImportAccounts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accounts }) });
    assert.equal(((await imp.json()) as { imported: number }).imported, N);

    // The first token, made through the server while it holds the data directory: it ends open mode.
    const created = await finished(runCli(["token", "create", "--name", "ops", "--scopes", "admin"], env));
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, new RegExp(`through the server at ${base}`));
    const token = created.stdout.trim();
    assert.match(token, /^cv_[A-Za-z0-9_-]{32}$/);
    const authed = { ...env, CONVEER_TOKEN: token };

    // The server that made the first token closes to anonymous calls at once.
    const anon = await finished(runCli(["audit"], env));
    assert.equal(anon.code, 1);
    assert.match(anon.stderr, /conveer: .*needs a token/);

    const rotated = await finished(runCli(["keys", "rotate", "--batch", "3"], authed));
    assert.equal(rotated.code, 0, rotated.stderr);
    const m = /^data key ([0-9a-f]{24}) is active; (\d+) values re-encrypted\n$/.exec(rotated.stdout);
    assert.ok(m, rotated.stdout);
    assert.equal(Number(m[2]), N);
    // stderr is not a terminal here: the bar prints its count lines, the last one at the total.
    const counts = [...rotated.stderr.matchAll(/re-encrypting \(rotation [0-9a-f]{24}\): (\d+)\/(\d+)/g)];
    assert.ok(counts.length > 0, rotated.stderr);
    assert.deepEqual(counts.at(-1)!.slice(1), [String(N), String(N)]);

    const audit = await finished(runCli(["audit", "--output", "json"], authed));
    assert.equal(audit.code, 0, audit.stderr);
    const entries = audit.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, string>);
    assert.deepEqual(entries.slice(0, 2).map((e) => [e.action, e.actor, e.target]), [
      ["keys.rotate", "ops", m[1]],
      ["token.create", "open-mode", "ops"],
    ]);
    assert.equal(entries.filter((e) => e.action === "account.import").length, N);
    assert.deepEqual(Object.keys(entries[0]).sort(), ["accountId", "action", "actor", "at", "detail", "id", "peer", "target"]);
    const csv = await finished(runCli(["audit", "--action", "token.", "--output", "csv"], authed));
    assert.equal(csv.stdout, `TIME,ACTOR,ACTION,ACCOUNT,TARGET,DETAIL,PEER\n${entries[1].at},open-mode,token.create,,ops,scopes: admin,${entries[1].peer}\n`);

    const { code } = await terminate(server);
    assert.equal(code, 0, server.stderr());

    // No server: the store itself (the lock is free now), said on stderr.
    const listed = await finished(runCli(["token", "list", "--output", "json"], env));
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stderr, /no server answers at .*; working on the store directly/);
    assert.deepEqual(listed.stdout.trimEnd().split("\n").map((l) => (JSON.parse(l) as { name: string }).name), ["ops"]);
    const revoked = await finished(runCli(["token", "revoke", "ops"], env));
    assert.equal(revoked.code, 0, revoked.stderr);
    const last = await finished(runCli(["audit", "--limit", "1", "--output", "json"], env));
    const entry = JSON.parse(last.stdout) as Record<string, string>;
    assert.equal(entry.action, "token.revoke");
    assert.match(entry.actor, /^cli@/);
  });
});
