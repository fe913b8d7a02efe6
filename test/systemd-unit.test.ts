/**
 * deploy/systemd: `systemd-analyze verify` (Debian's systemd) accepts conveer.service without a
 * single warning, inside a scratch root that holds the unit, the distribution's own units and a
 * stand-in for the installed `conveer` bin (verify checks ExecStart is executable); the unit keeps
 * its hardening; `systemd-sysusers --dry-run` accepts the user file. Skipped, saying so, where
 * systemd-analyze is missing (.ci/run installs it).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./support/cli.ts";

const run = promisify(execFile);
const UNIT = join(ROOT, "deploy/systemd/conveer.service");
const SYSUSERS = join(ROOT, "deploy/systemd/conveer.sysusers");

function has(program: string): boolean {
  try {
    execFileSync(program, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const skip = has("systemd-analyze") ? false : "systemd-analyze not found: install Debian's systemd package (.ci/run does)";

/** Every warning `systemd-analyze verify` prints for `unitText` installed as conveer.service in `root`. */
async function verify(root: string, unitText: string): Promise<string> {
  await writeFile(join(root, "etc/systemd/system/conveer.service"), unitText);
  try {
    const { stdout, stderr } = await run("systemd-analyze", ["verify", `--root=${root}`, "conveer.service"]);
    return (stdout + stderr).trim();
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return `exit ${e.code}: ${e.stdout}${e.stderr}`.trim();
  }
}

/** The [Service] settings, key → values. */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

describe("deploy/systemd/conveer.service", { skip }, () => {
  let root: string;
  let unit: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "conveer-systemd-"));
    unit = await readFile(UNIT, "utf8");
    await mkdir(join(root, "etc/systemd/system"), { recursive: true });
    await mkdir(join(root, "usr/lib/systemd"), { recursive: true });
    await cp("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true });
    const exec = settings(unit).get("ExecStart")![0].split(" ")[0];
    await mkdir(join(root, exec, ".."), { recursive: true });
    await writeFile(join(root, exec), "#!/bin/sh\n");
    await chmod(join(root, exec), 0o755);
  });
  after(() => rm(root, { recursive: true, force: true }));

  test("systemd-analyze verify prints nothing (and does flag a broken copy)", async () => {
    assert.equal(await verify(root, unit), "");
    const broken = unit.replace("ProtectSystem=strict", "ProtectSystem=stricter");
    assert.match(await verify(root, broken), /protect system value/i);
  });

  test("hardened: own user, ProtectSystem=strict, a state directory, an EnvironmentFile, no privileges", () => {
    const s = settings(unit);
    const one = (k: string) => s.get(k)?.at(-1);
    assert.equal(one("User"), "conveer");
    assert.equal(one("ProtectSystem"), "strict");
    assert.equal(one("StateDirectory"), "conveer");
    assert.equal(one("EnvironmentFile"), "/etc/conveer/conveer.env");
    assert.equal(one("NoNewPrivileges"), "yes");
    assert.equal(one("CapabilityBoundingSet"), "");
    assert.ok(s.get("Environment")!.includes("CONVEER_DATA_DIR=/var/lib/conveer"), "the data directory is the state directory");
    assert.match(one("ExecStart")!, /\/conveer start$/);
  });

  test("systemd-sysusers --dry-run accepts the user file", { skip: has("systemd-sysusers") ? false : "systemd-sysusers not found" }, async () => {
    const scratch = await mkdtemp(join(tmpdir(), "conveer-sysusers-"));
    try {
      const { stdout, stderr } = await run("systemd-sysusers", ["--dry-run", `--root=${scratch}`, SYSUSERS]);
      assert.match(stdout + stderr, /Creating user 'conveer'/);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});
