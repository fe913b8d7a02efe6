/**
 * CONVEER_LOG_FORMAT: `pretty` writes human-readable lines (pino-pretty); unset with stdout and
 * stderr piped (not a terminal) the lines are JSON, one object a line, as every other process
 * test reads them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";

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
