import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createSandbox } from "./sandbox.ts";
import { readWorldFile, writeWorldFile } from "./sandbox-world.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A data file holding a freshly seeded world, as the sandbox saves it. */
async function savedWorld(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "conveer-world-"));
  dirs.push(dir);
  const dataFile = path.join(dir, "sandbox.json");
  const sandbox = createSandbox({ dataFile });
  sandbox.addUser("vk", "alice", "secret-1");
  await sandbox.close();
  return dataFile;
}

/** The refusal names the file, says what is wrong (`what`) and gives both ways out. */
function refusal(file: string, what: RegExp) {
  return (err: unknown) => {
    const m = (err as Error).message;
    assert.ok(m.includes(file), `names the file: ${m}`);
    assert.match(m, what);
    assert.match(m, /Restore .* from a backup/);
    assert.ok(m.includes(`mv ${file} ${file}.damaged`), `says how to move it aside: ${m}`);
    return true;
  };
}

describe("sandbox world file", () => {
  test("a saved world loads again, and a save leaves no temp file", async () => {
    const file = await savedWorld();
    const world = readWorldFile(file);
    assert.ok(Object.values(world!.platforms.vk.users).some((u) => u.login === "alice"));
    writeWorldFile(file, world!);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["sandbox.json"]);
    const again = createSandbox({ dataFile: file });
    assert.ok(Object.values(again.state().platforms.vk.users).some((u) => u.login === "alice"));
    await again.close();
  });

  test("a file cut short is refused, naming the file, the damage and the fix", async () => {
    const file = await savedWorld();
    const text = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, text.slice(0, Math.floor(text.length / 2)));
    assert.throws(() => createSandbox({ dataFile: file }), refusal(file, /is not valid JSON \(.*JSON.*\).*cut short/));
  });

  test("an empty file is refused", async () => {
    const file = await savedWorld();
    fs.writeFileSync(file, "");
    assert.throws(() => createSandbox({ dataFile: file }), refusal(file, /is empty/));
  });

  test("valid JSON of the wrong shape is refused, naming the first wrong field", async () => {
    const file = await savedWorld();
    const world = JSON.parse(fs.readFileSync(file, "utf8"));
    const cases: [(w: any) => void, RegExp][] = [
      [(w) => (w.platforms = null), /platforms must be an object, not null/],
      [(w) => delete w.sms, /sms is missing/],
      [(w) => (w.version = 2), /version must be 1, not 2/],
      [(w) => (Object.values(w.platforms.vk.users)[0] as { friends: unknown }).friends = null, /platforms\.vk\.users\.u\d+\.friends must be an array, not null/],
      [(w) => (w.platforms.telegram.messages = {}), /platforms\.telegram\.messages must be an array, not object/],
      [(w) => (w.sms.balanceKop = "1000"), /sms\.balanceKop must be a number, not the string "1000"/],
    ];
    for (const [damage, what] of cases) {
      const copy = structuredClone(world);
      damage(copy);
      fs.writeFileSync(file, JSON.stringify(copy));
      assert.throws(() => createSandbox({ dataFile: file }), refusal(file, what));
    }
    fs.writeFileSync(file, "[]");
    assert.throws(() => createSandbox({ dataFile: file }), refusal(file, /the world must be an object, not an array/));
  });

  test("a file from before idempotency keys (and a platform it never had) still loads", async () => {
    const file = await savedWorld();
    const world = JSON.parse(fs.readFileSync(file, "utf8"));
    for (const p of Object.values(world.platforms) as { idempotency?: unknown }[]) delete p.idempotency;
    delete world.platforms.max;
    fs.writeFileSync(file, JSON.stringify(world));
    const sandbox = createSandbox({ dataFile: file });
    assert.deepEqual(sandbox.state().platforms.vk.idempotency, {});
    assert.ok(Object.keys(sandbox.state().platforms.max.users).length > 0, "the missing platform is seeded");
    await sandbox.close();
  });
});
