/**
 * CONVEER_LOG_FORMAT: `pretty` writes human-readable lines (pino-pretty); unset with stdout and
 * stderr piped (not a terminal) the lines are JSON, one object a line, as every other process
 * test reads them; unset on a terminal (a pseudo-terminal made by util-linux `script`) they are
 * pretty.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAIN, ROOT, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import { eventually } from "./support/grpc.ts";

/** The pids whose parent is `pid` (from /proc: no procps needed). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Fields after the command's closing parenthesis: state, ppid, …
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** util-linux `script`, which runs a command on a pseudo-terminal, or why the terminal test is skipped. */
const NO_SCRIPT = (() => {
  try {
    return /util-linux/.test(execFileSync("script", ["--version"], { encoding: "utf8" })) ? false : "script is not util-linux's";
  } catch {
    return "util-linux script is not installed";
  }
})();

for (const format of ["pretty", ""] as const) {
  test(`conveer start with CONVEER_LOG_FORMAT=${format || "(unset, not a terminal)"} writes ${format ? "pretty" : "JSON"} lines`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "conveer-logfmt-"));
    try {
      const sys = await systemEnv(join(dir, "data"), { CONVEER_MASTER_KEY: "55".repeat(32), ...(format ? { CONVEER_LOG_FORMAT: format } : {}) });
      const cli = runCli(["start", "--services", "account"], sys.env);
      await waitHealthy(cli, sys.http);
      assert.equal((await terminate(cli)).code, 0, cli.stderr());
      const lines = cli.stdout().split("\n").filter((l) => l.trim());
      const started = lines.find((l) => l.includes("conveer started"));
      assert.ok(started, cli.stdout().slice(-2000));
      if (format === "pretty") {
        assert.match(started, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: conveer started/);
        assert.equal(lines.filter((l) => l.startsWith("{")).length, 0, "no JSON line");
      } else {
        for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), l);
        assert.equal((JSON.parse(started) as { level: number }).level, 30);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test("conveer start with CONVEER_LOG_FORMAT unset, on a terminal, writes pretty lines", { skip: NO_SCRIPT }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "conveer-logtty-"));
  try {
    const sys = await systemEnv(join(dir, "data"), { CONVEER_MASTER_KEY: "56".repeat(32) });
    // script -e: its exit code is the command's; -f: output as it comes. stdin, stdout and stderr
    // of conveer are the pseudo-terminal; what it writes comes out of script's stdout. script runs
    // the command with $SHELL -c: `exec` makes conveer script's child whichever shell that is (dash
    // forks for it, bash does not; without `exec` the SIGTERM below went to dash under CI).
    const cli = runCli(["/dev/null"], sys.env, { argv: ["script", "-qefc", `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} start --services account`], cwd: ROOT });
    await waitHealthy(cli, sys.http);
    const lines = () => cli.stdout().replace(/\x1b\[[0-9;]*m/g, "").split(/\r?\n/).filter((l) => l.trim());
    await eventually(async () => lines().some((l) => l.includes("conveer started")), 10_000, "the started line");
    assert.match(lines().find((l) => l.includes("conveer started"))!, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: conveer started/, cli.stdout().slice(-2000));
    assert.equal(lines().filter((l) => l.startsWith("{")).length, 0, "no JSON line");
    assert.match(cli.stdout(), /\x1b\[/, "coloured on a terminal");
    // SIGTERM to conveer itself (script's child): it stops cleanly and script exits with its code.
    const children = childrenOf(cli.proc.pid!);
    assert.equal(children.length, 1, "conveer runs under script");
    const child = children[0];
    assert.match(readFileSync(`/proc/${child}/cmdline`, "utf8"), /main\.ts\0start/, "script's child is conveer itself, not a shell");
    process.kill(child, "SIGTERM");
    assert.equal(await cli.exited, 0, cli.stdout().slice(-2000));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
