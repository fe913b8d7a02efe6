/**
 * The data directory as real `conveer start` processes see it: one process per directory (two
 * racing starts, a holder killed with SIGKILL), and damaged files refused at start with a message
 * naming the file and the fix (sandbox.json, a missing master.key).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

describe("the data directory of `conveer start` (embedded store)", () => {
  let dataDir: string;
  const children: Cli[] = [];
  const start = async () => {
    const sys = await systemEnv(dataDir);
    const cli = runCli(["start"], sys.env);
    children.push(cli);
    return { cli, http: sys.http };
  };
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "conveer-datadir-"));
  });
  after(async () => {
    await killAll(children);
    await rm(dataDir, { recursive: true, force: true });
  });

  test("two starts racing on one directory: exactly one serves, the other exits 1 naming it", async () => {
    const a = await start();
    const b = await start();
    // The loser exits at once; the winner keeps running and becomes healthy.
    const first = await Promise.race([a.cli.exited.then(() => a), b.cli.exited.then(() => b)]);
    const winner = first === a ? b : a;
    assert.equal(await first.cli.exited, 1, first.cli.stderr());
    assert.match(first.cli.stderr(), new RegExp(`another conveer process \\(pid ${winner.cli.proc.pid}\\) is using the embedded store in ${dataDir}`));
    await waitHealthy(winner.cli, winner.http);
    assert.equal(JSON.parse(await readFile(join(dataDir, "conveer.lock"), "utf8")).pid, winner.cli.proc.pid);

    // Killed without a chance to clean up, the winner leaves its lock file; the next start breaks it.
    winner.cli.proc.kill("SIGKILL");
    await winner.cli.exited;
    assert.ok(existsSync(join(dataDir, "conveer.lock")), "SIGKILL left the lock file");
    const next = await start();
    await waitHealthy(next.cli, next.http);
    const { code } = await terminate(next.cli);
    assert.equal(code, 0, next.cli.stderr());
    assert.equal(existsSync(join(dataDir, "conveer.lock")), false, "a clean stop removes the lock");
  });

  test("a damaged sandbox.json stops the start, naming the file and the fix; moved aside, the next start serves", async () => {
    const file = join(dataDir, "sandbox.json");
    const text = await readFile(file, "utf8");
    await writeFile(file, text.slice(0, Math.floor(text.length / 2)));
    const damaged = await start();
    assert.equal(await damaged.cli.exited, 1);
    assert.match(damaged.cli.stderr(), new RegExp(`conveer: the sandbox world file ${file} is not valid JSON \\(.+\\).*Restore .* from a backup, or move it aside \\(mv ${file} ${file}\\.damaged\\)`));
    assert.equal(existsSync(join(dataDir, "conveer.lock")), false, "a refused start releases the lock");

    await rename(file, `${file}.damaged`);
    const next = await start();
    await waitHealthy(next.cli, next.http);
    assert.equal((await terminate(next.cli)).code, 0, next.cli.stderr());
  });

  test("a missing master.key beside existing data stops the start, and no new key is written", async () => {
    const key = join(dataDir, "master.key");
    await rename(key, `${key}.backup`);
    const refused = await start();
    assert.equal(await refused.cli.exited, 1);
    assert.match(refused.cli.stderr(), new RegExp(`conveer: the master key file ${key} is missing and CONVEER_MASTER_KEY is not set, but the embedded store in ${join(dataDir, "pgdata")} holds 1 data key`));
    assert.match(refused.cli.stderr(), /Restore master\.key from a backup/);
    assert.equal(existsSync(key), false, "no fresh master key beside the existing data");

    await rename(`${key}.backup`, key);
    const next = await start();
    await waitHealthy(next.cli, next.http);
    assert.equal((await terminate(next.cli)).code, 0, next.cli.stderr());
  });
});
