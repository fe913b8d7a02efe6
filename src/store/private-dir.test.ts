import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "./pglite.ts";

const modeOf = (p: string) => (statSync(p).mode & 0o777).toString(8);

test("the embedded store's directory is 0700 (PGlite makes its files 0666), new or found wider", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "conveer-private-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const prev = process.umask(0o022);
  t.after(() => process.umask(prev));

  const fresh = join(root, "fresh", "pgdata");
  const db = await openPglite(fresh);
  await db.close();
  assert.equal(modeOf(fresh), "700", "a new store's directory");

  const wide = join(root, "wide");
  mkdirSync(wide);
  chmodSync(wide, 0o755);
  const again = await openPglite(wide);
  await again.close();
  assert.equal(modeOf(wide), "700", "a directory found 0755 is narrowed");
});
