import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { createExclusive } from "../create-exclusive.ts";
import { dirname } from "node:path";

/** A 32-byte data key with its id. */
export type DataKey = { id: string; key: Buffer };

/** A failure to seal or open: malformed input, a tampered value or the wrong key. */
export class VaultError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "VaultError";
  }
}

const VERSION = "v1";
const WRAP_VERSION = "w1";
const ALGORITHM = "aes-256-gcm";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
// Ids are embedded in the dot-separated sealed format, so they may not contain dots.
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
const HOW_TO_MAKE = "create one with `openssl rand -hex 32`";

function checkKey(key: Buffer, what: string): void {
  if (key.length !== KEY_BYTES) throw new VaultError(`${what} must be ${KEY_BYTES} bytes, got ${key.length}`);
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new VaultError(`data key id ${JSON.stringify(id)} is invalid: use 1-64 characters from A-Z a-z 0-9 _ -`);
}

// The header (version and key id) is authenticated too, so a value cannot be relabelled
// as sealed by another key, and the caller's aad binds it to its row.
function sealAad(keyId: string, aad: string | undefined): Buffer {
  return Buffer.from(`${VERSION}.${keyId}.${aad ?? ""}`, "utf8");
}

// Binding the data key id means a wrapped key copied onto another key's row will not unwrap.
function wrapAad(keyId: string): Buffer {
  return Buffer.from(`${WRAP_VERSION}.${keyId}`, "utf8");
}

function b64(buf: Buffer): string {
  return buf.toString("base64url");
}

// Buffer.from ignores junk and stray padding bits; requiring the canonical form means any
// changed character of a sealed string is detected, not silently decoded to the same bytes.
function unb64(text: string, what: string): Buffer {
  if (!B64URL.test(text)) throw new VaultError(`malformed sealed value: ${what} is not base64url`);
  const buf = Buffer.from(text, "base64url");
  if (b64(buf) !== text) throw new VaultError(`malformed sealed value: ${what} is not canonical base64url`);
  return buf;
}

// A key given as bytes is made into a KeyObject on every cipher (about 20 µs of a 26 µs open);
// made once per key buffer instead (the keys are long-lived: the vault's data keys, the masters).
const keyObjects = new WeakMap<Buffer, KeyObject>();
function keyObject(key: Buffer): KeyObject {
  let k = keyObjects.get(key);
  if (!k) keyObjects.set(key, (k = createSecretKey(key)));
  return k;
}

function encrypt(key: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; tag: Buffer; ct: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, keyObject(key), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), ct };
}

function decrypt(key: Buffer, iv: Buffer, tag: Buffer, ct: Buffer, aad: Buffer, what: string): Buffer {
  if (iv.length !== IV_BYTES) throw new VaultError(`malformed ${what}: iv must be ${IV_BYTES} bytes, got ${iv.length}`);
  if (tag.length !== TAG_BYTES) throw new VaultError(`malformed ${what}: tag must be ${TAG_BYTES} bytes, got ${tag.length}`);
  const decipher = createDecipheriv(ALGORITHM, keyObject(key), iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ct), decipher.final()]);
  } catch (err) {
    throw new VaultError(`cannot open ${what}: tampered or wrong key (or a different aad context than it was sealed with)`, { cause: err });
  }
}

type SealedParts = { keyId: string; iv: Buffer; tag: Buffer; ct: Buffer };

function parseSealed(sealed: string): SealedParts {
  if (typeof sealed !== "string") throw new VaultError("malformed sealed value: not a string");
  const parts = sealed.split(".");
  if (parts.length !== 5 || parts[0] !== VERSION) {
    throw new VaultError(`malformed sealed value: expected "${VERSION}.<keyId>.<iv>.<tag>.<ciphertext>"`);
  }
  const keyId = parts[1];
  if (!KEY_ID.test(keyId)) throw new VaultError("malformed sealed value: invalid key id");
  return { keyId, iv: unb64(parts[2], "iv"), tag: unb64(parts[3], "tag"), ct: unb64(parts[4], "ciphertext") };
}

/** Encrypts utf8 plaintext under the key as "v1.<keyId>.<iv>.<tag>.<ciphertext>" (base64url parts); aad binds it to its context. */
export function seal(key: DataKey, plaintext: string, aad?: string): string {
  checkKeyId(key.id);
  checkKey(key.key, `data key ${key.id}`);
  const { iv, tag, ct } = encrypt(key.key, Buffer.from(plaintext, "utf8"), sealAad(key.id, aad));
  return `${VERSION}.${key.id}.${b64(iv)}.${b64(tag)}.${b64(ct)}`;
}

/** The id of the key a sealed string was made with, so the caller can look that key up. */
export function sealedKeyId(sealed: string): string {
  return parseSealed(sealed).keyId;
}

/** Decrypts a sealed string; throws VaultError when it is malformed, tampered, or the key or aad is wrong. */
export function open(key: DataKey, sealed: string, aad?: string): string {
  const p = parseSealed(sealed);
  if (p.keyId !== key.id) throw new VaultError(`cannot open sealed value: it was sealed under data key ${p.keyId}, not ${key.id} (wrong key)`);
  checkKey(key.key, `data key ${key.id}`);
  return decrypt(key.key, p.iv, p.tag, p.ct, sealAad(p.keyId, aad), "sealed value").toString("utf8");
}

/** Encrypts a data key under the master key as "w1.<iv>.<tag>.<ciphertext>", bound to the key's id. */
export function wrapKey(master: Buffer, dataKey: DataKey): string {
  checkKey(master, "master key");
  checkKeyId(dataKey.id);
  checkKey(dataKey.key, `data key ${dataKey.id}`);
  const { iv, tag, ct } = encrypt(master, dataKey.key, wrapAad(dataKey.id));
  return `${WRAP_VERSION}.${b64(iv)}.${b64(tag)}.${b64(ct)}`;
}

/** Decrypts a wrapped data key; throws VaultError when the master key is wrong or the value was altered. */
export function unwrapKey(master: Buffer, id: string, wrapped: string): DataKey {
  checkKey(master, "master key");
  checkKeyId(id);
  const parts = typeof wrapped === "string" ? wrapped.split(".") : [];
  if (parts.length !== 4 || parts[0] !== WRAP_VERSION) {
    throw new VaultError(`malformed wrapped key ${id}: expected "${WRAP_VERSION}.<iv>.<tag>.<ciphertext>"`);
  }
  const key = decrypt(master, unb64(parts[1], "iv"), unb64(parts[2], "tag"), unb64(parts[3], "ciphertext"), wrapAad(id), `wrapped key ${id}`);
  if (key.length !== KEY_BYTES) throw new VaultError(`wrapped key ${id} holds ${key.length} bytes, expected ${KEY_BYTES}`);
  return { id, key };
}

/** A fresh random 32-byte data key with the given id. */
export function newDataKey(id: string): DataKey {
  checkKeyId(id);
  return { id, key: randomBytes(KEY_BYTES) };
}

// The source names where the text came from, so the error points at the thing to fix;
// the key text itself is never echoed, being a secret.
function parseKeyText(text: string, source: string): Buffer {
  const t = (text ?? "").trim();
  if (t === "") throw new Error(`${source} is empty: it must be 64 hex characters or base64 of 32 bytes; ${HOW_TO_MAKE}`);
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, "hex");
  if (/^[A-Za-z0-9+/]{43}=?$/.test(t) || /^[A-Za-z0-9_-]{43}=?$/.test(t)) {
    const buf = Buffer.from(t, t.includes("+") || t.includes("/") ? "base64" : "base64url");
    // Reject inputs whose last character carries stray bits, i.e. is not base64 of exactly these bytes.
    if (buf.length === KEY_BYTES && buf.toString("base64url") === t.replace(/=$/, "").replace(/\+/g, "-").replace(/\//g, "_")) return buf;
  }
  const hint = /^[0-9a-fA-F]+$/.test(t) ? ` (got ${t.length} hex characters)` : ` (got ${t.length} characters)`;
  throw new Error(`${source} must be 64 hex characters or base64 of 32 bytes${hint}; ${HOW_TO_MAKE}`);
}

/** Parses a master key (64 hex chars or base64 of 32 bytes) from `source` (named in the error, which says how to make a valid one). */
export function parseMasterKey(text: string, source = "CONVEER_MASTER_KEY"): Buffer {
  return parseKeyText(text, source);
}

/** A short public name of a master key (the first 8 hex digits of its SHA-256), to tell keys apart in logs and the audit log. */
export function keyFingerprint(key: Buffer): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

const isWindows = process.platform === "win32";

async function ensurePrivate(path: string): Promise<void> {
  if (isWindows) return;
  const st = await stat(path);
  if ((st.mode & 0o077) === 0) return;
  try {
    await chmod(path, 0o600);
  } catch (err) {
    throw new Error(`master key file ${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}) and cannot be fixed; run \`chmod 600 ${path}\``, { cause: err });
  }
}

// Written to a private temporary file and then hard-linked into place, so that two processes
// starting at once cannot both create a key, and neither can read a half-written file.
async function createKeyFile(path: string, key: Buffer = randomBytes(KEY_BYTES)): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  return createExclusive(path, key.toString("hex") + "\n", 0o600);
}

/** Writes `key` (default: 32 fresh random bytes) to a new 0600 file at path, synced; throws when path exists. */
export async function writeNewKeyFile(path: string, key: Buffer = randomBytes(KEY_BYTES)): Promise<Buffer> {
  if (!(await createKeyFile(path, key))) throw new Error(`${path} already exists: a new key is written only to a file that does not exist yet`);
  return key;
}

/** Loads the master key file at path; undefined when there is none. */
export async function readMasterKeyFile(path: string): Promise<Buffer | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  await ensurePrivate(path);
  return parseKeyText(text, `master key file ${path}`);
}

/** Loads the master key file at path, creating it (32 random bytes as hex, mode 0600) when missing. */
export async function loadOrCreateMasterKeyFile(path: string): Promise<Buffer> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    await createKeyFile(path);
    text = await readFile(path, "utf8");
  }
  await ensurePrivate(path);
  return parseKeyText(text, `master key file ${path}`);
}
