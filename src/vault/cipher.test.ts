import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, chmod, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VaultError, loadOrCreateMasterKeyFile, newDataKey, open, parseMasterKey, seal, sealedKeyId, unwrapKey, wrapKey } from "./cipher.ts";

// Flips one bit of one decoded byte of part `index` (so the change is real, not a padding bit).
function flip(sealed: string, index: number, byte = 0): string {
  const parts = sealed.split(".");
  const buf = Buffer.from(parts[index], "base64url");
  buf[byte] ^= 0x01;
  parts[index] = buf.toString("base64url");
  return parts.join(".");
}

test("seal/open round trip, including empty and non-ASCII text", () => {
  const key = newDataKey("k1");
  for (const text of ["hunter2", "", "пароль 🔑", "x".repeat(100_000)]) {
    const sealed = seal(key, text, "account:1");
    assert.match(sealed, /^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]*$/);
    assert.equal(open(key, sealed, "account:1"), text);
  }
  assert.equal(open(key, seal(key, "no aad")), "no aad");
});

test("seal uses a fresh IV each time", () => {
  const key = newDataKey("k1");
  assert.notEqual(seal(key, "same"), seal(key, "same"));
});

test("sealedKeyId returns the key id and rejects malformed input", () => {
  const key = newDataKey("key_2-b");
  assert.equal(sealedKeyId(seal(key, "x")), "key_2-b");
  for (const bad of ["", "v1.k1", "v2.k1.a.b.c", "v1.k1.a.b.c.d", "v1..AAAA.AAAA.AAAA", "v1.k1.!!.AAAA.AAAA"]) {
    assert.throws(() => sealedKeyId(bad), VaultError, bad);
  }
});

test("tampering with any part is detected", () => {
  const key = newDataKey("k1");
  const sealed = seal(key, "secret password", "account:1");
  for (const part of [2, 3, 4]) {
    assert.throws(() => open(key, flip(sealed, part), "account:1"), (err: unknown) => err instanceof VaultError && /tampered or wrong key/.test(err.message));
  }
  // A changed character that would decode to the same bytes is refused as non-canonical.
  const parts = sealed.split(".");
  const tag = parts[3];
  const last = tag[tag.length - 1];
  parts[3] = tag.slice(0, -1) + (last === "A" ? "B" : "A");
  assert.throws(() => open(key, parts.join("."), "account:1"), VaultError);
  // Truncated IV or tag.
  const short = sealed.split(".");
  short[2] = short[2].slice(0, 8);
  assert.throws(() => open(key, short.join("."), "account:1"), /iv must be 12 bytes/);
});

test("a wrong key fails", () => {
  const key = newDataKey("k1");
  const sealed = seal(key, "secret", "a");
  const sameIdOtherBytes = newDataKey("k1");
  assert.throws(() => open(sameIdOtherBytes, sealed, "a"), /tampered or wrong key/);
  assert.throws(() => open(newDataKey("k2"), sealed, "a"), /sealed under data key k1, not k2/);
});

test("the key id is authenticated: relabelling a sealed value fails", () => {
  const k1 = newDataKey("k1");
  const k2 = { id: "k2", key: k1.key };
  const relabelled = seal(k1, "secret", "a").replace(/^v1\.k1\./, "v1.k2.");
  assert.throws(() => open(k2, relabelled, "a"), /tampered or wrong key/);
});

test("an aad mismatch fails", () => {
  const key = newDataKey("k1");
  const sealed = seal(key, "secret", "account:1");
  assert.throws(() => open(key, sealed, "account:2"), /tampered or wrong key/);
  assert.throws(() => open(key, sealed), /tampered or wrong key/);
});

test("wrapKey/unwrapKey round trip, bound to master and key id", () => {
  const master = randomBytes(32);
  const dk = newDataKey("dk1");
  const wrapped = wrapKey(master, dk);
  assert.match(wrapped, /^w1\./);
  const back = unwrapKey(master, "dk1", wrapped);
  assert.equal(back.id, "dk1");
  assert.ok(back.key.equals(dk.key));
  assert.throws(() => unwrapKey(randomBytes(32), "dk1", wrapped), /tampered or wrong key/);
  assert.throws(() => unwrapKey(master, "dk2", wrapped), /tampered or wrong key/);
  assert.throws(() => unwrapKey(master, "dk1", flip(wrapped, 3)), VaultError);
  assert.throws(() => unwrapKey(master, "dk1", "garbage"), /malformed wrapped key/);
  assert.throws(() => wrapKey(randomBytes(16), dk), /master key must be 32 bytes/);
});

test("newDataKey makes 32 random bytes and refuses ids that break the format", () => {
  const a = newDataKey("a");
  assert.equal(a.key.length, 32);
  assert.ok(!a.key.equals(newDataKey("a").key));
  assert.throws(() => newDataKey("has.dot"), VaultError);
  assert.throws(() => newDataKey(""), VaultError);
});

test("parseMasterKey accepts hex and base64 of 32 bytes", () => {
  const raw = randomBytes(32);
  assert.ok(parseMasterKey(raw.toString("hex")).equals(raw));
  assert.ok(parseMasterKey(raw.toString("hex").toUpperCase()).equals(raw));
  assert.ok(parseMasterKey(`  ${raw.toString("hex")}\n`).equals(raw));
  assert.ok(parseMasterKey(raw.toString("base64")).equals(raw));
  assert.ok(parseMasterKey(raw.toString("base64url")).equals(raw));
});

test("parseMasterKey errors name the variable and say how to make a key, never echoing it", () => {
  const cases = ["", "   ", "abc", "z".repeat(64), randomBytes(16).toString("hex"), randomBytes(31).toString("base64"), randomBytes(33).toString("base64")];
  for (const bad of cases) {
    assert.throws(
      () => parseMasterKey(bad),
      (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.match(err.message, /CONVEER_MASTER_KEY/);
        assert.match(err.message, /openssl rand -hex 32/);
        if (bad.trim().length > 3) assert.ok(!err.message.includes(bad.trim()), "the key text must not be echoed");
        return true;
      },
      JSON.stringify(bad),
    );
  }
});

test("loadOrCreateMasterKeyFile creates a 0600 file and reloads the same key", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "conveer-cipher-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "sub", "master.key");
  const first = await loadOrCreateMasterKeyFile(path);
  assert.equal(first.length, 32);
  assert.match(await readFile(path, "utf8"), /^[0-9a-f]{64}\n$/);
  if (process.platform !== "win32") assert.equal((await stat(path)).mode & 0o777, 0o600);
  const again = await loadOrCreateMasterKeyFile(path);
  assert.ok(again.equals(first));
});

test("loadOrCreateMasterKeyFile run concurrently agrees on one key", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "conveer-cipher-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "master.key");
  const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateMasterKeyFile(path)));
  for (const k of keys) assert.ok(k.equals(keys[0]));
});

test("loadOrCreateMasterKeyFile tightens a loose mode and rejects a bad file", { skip: process.platform === "win32" }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "conveer-cipher-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "master.key");
  const raw = randomBytes(32);
  await writeFile(path, raw.toString("hex"));
  await chmod(path, 0o644);
  assert.ok((await loadOrCreateMasterKeyFile(path)).equals(raw));
  assert.equal((await stat(path)).mode & 0o777, 0o600);

  const bad = join(dir, "bad.key");
  await writeFile(bad, "not a key", { mode: 0o600 });
  await assert.rejects(loadOrCreateMasterKeyFile(bad), (err: Error) => err.message.includes(bad) && err.message.includes("openssl rand -hex 32"));
});
