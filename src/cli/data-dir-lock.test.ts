import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LOCK_FILE, holdDataDirLock } from "./data-dir-lock.ts";

const LOCK_MODULE = fileURLToPath(new URL("./data-dir-lock.ts", import.meta.url));

/**
 * Processes that each take the lock on "go" (a line on stdin, sent to all at once), print "won" or
 * "lost: <message>", and hold a won lock until stdin closes.
 */
async function racers(dir: string, n: number): Promise<string[]> {
  const code = `
    import { holdDataDirLock } from ${JSON.stringify(LOCK_MODULE)};
    process.stdin.once("data", async () => {
      try {
        const release = await holdDataDirLock(${JSON.stringify(dir)});
        console.log("won");
        process.stdin.on("end", () => release().then(() => process.exit(0)));
      } catch (err) {
        console.log("lost: " + err.message);
        process.exit(0);
      }
    });
    console.log("ready");`;
  const procs = Array.from({ length: n }, () => spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["pipe", "pipe", "inherit"] }));
  const lines = procs.map((p) => {
    let out = "";
    p.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    return (want: number) => new Promise<string[]>((resolve) => {
      const check = () => (out.split("\n").filter(Boolean).length >= want ? resolve(out.split("\n").filter(Boolean)) : setTimeout(check, 10));
      check();
    });
  });
  await Promise.all(lines.map((l) => l(1)));
  for (const p of procs) p.stdin!.write("go\n");
  const answers = (await Promise.all(lines.map((l) => l(2)))).map((l) => l[1]);
  for (const p of procs) p.stdin!.end();
  await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode === null ? p.on("exit", r) : r(null)))));
  return answers;
}

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function dataDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "conveer-lock-"));
  dirs.push(d);
  return d;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((r) => p.on("exit", r));
  return p.pid!;
}

const bootId = () => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const lockOf = (pid: number, extra: Record<string, string> = {}) =>
  JSON.stringify({ pid, start: "1", boot: bootId(), host: hostname(), token: "stale-token", ...extra }) + "\n";

describe("data directory lock", () => {
  test("is held while in use, refused to a second holder with the holder's pid, free again once released", async () => {
    const dir = await dataDir();
    const release = await holdDataDirLock(dir);
    assert.equal(JSON.parse(readFileSync(join(dir, LOCK_FILE), "utf8")).pid, process.pid);
    await assert.rejects(holdDataDirLock(dir), new RegExp(`another conveer process \\(pid ${process.pid}\\) is using the embedded store in ${dir}`));
    await release();
    assert.equal(existsSync(join(dir, LOCK_FILE)), false);
    await (await holdDataDirLock(dir))();
    assert.deepEqual(await readdir(dir), [], "no lock or temp file is left behind");
  });

  test("of many starts racing for a free directory, exactly one wins", async () => {
    const dir = await dataDir();
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => holdDataDirLock(dir)));
    const won = results.filter((r) => r.status === "fulfilled");
    assert.equal(won.length, 1, results.map((r) => (r.status === "rejected" ? String(r.reason) : "won")).join("\n"));
    await (won[0] as PromiseFulfilledResult<() => Promise<void>>).value();
  });

  test("of processes racing for one directory at the same instant, exactly one wins; the others name it", async () => {
    const dir = await dataDir();
    for (let round = 0; round < 3; round++) {
      const answers = await racers(dir, 6);
      assert.equal(answers.filter((a) => a === "won").length, 1, answers.join("\n"));
      for (const a of answers) if (a !== "won") assert.match(a, /^lost: another conveer process \(pid \d+\) is using the embedded store/);
      assert.deepEqual(await readdir(dir), [], "the winner released the lock");
    }
  });

  test("a lock left by a process that died is broken; of many starts breaking it at once, exactly one wins", async () => {
    const dir = await dataDir();
    const dead = await deadPid();
    // Rounds, because a start that breaks a stale lock after another start already replaced it
    // (the race this guards against) needs an unlucky interleaving.
    for (let round = 0; round < 8; round++) {
      await writeFile(join(dir, LOCK_FILE), lockOf(dead));
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => holdDataDirLock(dir)));
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, results.map((r) => (r.status === "rejected" ? String(r.reason) : "won")).join("\n"));
      for (const r of results) if (r.status === "rejected") assert.match(String(r.reason), /another conveer process \(pid \d+\)/);
      await (won[0] as PromiseFulfilledResult<() => Promise<void>>).value();
      assert.deepEqual(await readdir(dir), []);
    }
  });

  test("a pid now used by another process (started at another time) does not keep the lock", async () => {
    const dir = await dataDir();
    // This very process is alive, but it is not the one that took the lock (another start time).
    await writeFile(join(dir, LOCK_FILE), lockOf(process.pid));
    await (await holdDataDirLock(dir))();
  });

  test("a lock from an earlier boot is stale; one from another host is refused with the way out", async () => {
    const dir = await dataDir();
    await writeFile(join(dir, LOCK_FILE), lockOf(process.pid, { boot: "an-earlier-boot" }));
    await (await holdDataDirLock(dir))();
    await writeFile(join(dir, LOCK_FILE), lockOf(1, { host: "other-host" }));
    await assert.rejects(holdDataDirLock(dir), /pid 1 on host other-host.*cannot tell whether it still runs.*delete the lock file/);
    await writeFile(join(dir, LOCK_FILE), "garbage");
    await assert.rejects(holdDataDirLock(dir), /lock file .* is not one Conveer wrote; if no conveer process uses this data directory, delete it/);
  });
});
