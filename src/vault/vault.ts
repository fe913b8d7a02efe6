import { AppError } from "../errors.ts";
import type { Db, Queryable, Transaction } from "../store/db.ts";
import { newDataKey, open, seal, sealedKeyId, unwrapKey, wrapKey } from "./cipher.ts";
import type { DataKey } from "./cipher.ts";

const KEYS_CHANNEL = "conveer_keys";

/**
 * The credential vault: seals secrets under the active data key and opens them under whichever
 * key sealed them. Data keys live in the store wrapped by the master key, which never does.
 */
export type Vault = {
  /** Seals plaintext under the active key; `aad` binds it to its row (e.g. "account:<id>"). */
  seal(plaintext: string, aad: string): { sealed: string; keyId: string };
  /** Opens a sealed value; loads a key another replica created if needed. */
  open(sealed: string, aad: string): Promise<string>;
  /** The id of the key new secrets are sealed under. */
  activeKeyId(): string;
  /** Re-reads the keys from the store (after a rotation elsewhere). */
  reload(): Promise<void>;
  /**
   * Creates data key `id` (wrapped by this vault's master key) and makes it the active one, running
   * `within` in the same transaction (the rotation's record and audit entry); then reloads.
   */
  activateNewKey(id: string, within?: (tx: Transaction) => Promise<void>): Promise<void>;
  stop(): Promise<void>;
};

/**
 * Master keys as the vault takes them: the current one first (it wraps the first data key), then
 * any previous one (CONVEER_MASTER_KEY_PREVIOUS) that data keys may still be wrapped by during a
 * master key rotation. Each data key is unwrapped by whichever opens it.
 */
export type MasterKeys = Buffer | readonly Buffer[];

/** Loads the data keys (creating the first one) and follows rotations made by other processes. */
export async function createVault(db: Db, masterKeys: MasterKeys, newId: () => string): Promise<Vault> {
  const master = masterList(masterKeys);
  const keys = new Map<string, DataKey>();
  let active = "";

  async function reload(): Promise<void> {
    const r = await db.query<{ id: string; wrapped: string; active: boolean }>("SELECT id, wrapped, active FROM data_keys");
    if (r.rows.length === 0) {
      await createFirstKey(db, master, newId());
      return reload();
    }
    for (const row of r.rows) {
      if (!keys.has(row.id)) keys.set(row.id, dataKey(unwrapMaster(master, row.id, row.wrapped)));
      if (row.active) active = row.id;
    }
  }
  // Listen before the first read, so a rotation made in between is not missed.
  const reloadQuietly = () => void reload().catch(() => {});
  const unlisten = await db.listen(KEYS_CHANNEL, reloadQuietly, { onResubscribe: reloadQuietly });
  try {
    await reload();
  } catch (err) {
    await unlisten();
    throw err;
  }

  return {
    seal(plaintext, aad) {
      const key = keys.get(active)!;
      return { sealed: seal(key, plaintext, aad), keyId: key.id };
    },
    async open(sealed, aad) {
      const id = sealedKeyId(sealed);
      if (!keys.has(id)) await reload();
      const key = keys.get(id);
      if (!key) throw new AppError("INTERNAL", `data key ${id} is missing from the store`);
      return open(key, sealed, aad);
    },
    activeKeyId: () => active,
    reload,
    async activateNewKey(id, within) {
      await createActiveKey(db, master, id, within);
      await reload();
    },
    stop: unlisten,
  };
}

function masterList(m: MasterKeys): readonly Buffer[] {
  const list = Buffer.isBuffer(m) ? [m] : m;
  if (list.length === 0) throw new Error("no master key given");
  return list;
}

/** The data key `id` and which of the master keys unwrapped it; throws naming where master keys come from when none does. */
export function unwrapMaster(masters: readonly Buffer[], id: string, wrapped: string): DataKey & { by: Buffer } {
  let last: unknown;
  for (const m of masters) {
    try {
      return { ...unwrapKey(m, id, wrapped), by: m };
    } catch (err) {
      last = err;
    }
  }
  throw new Error(
    `cannot unwrap data key ${id}: the master key (CONVEER_MASTER_KEY${masters.length > 1 ? " or CONVEER_MASTER_KEY_PREVIOUS" : ""}, or the key file master.key in the data directory) ` +
      "is not the one the store's data keys are wrapped by; if the master key was changed (`conveer keys rotate-master`), give this host the new one",
    { cause: last },
  );
}

/**
 * Creates the first data key unless one exists. Replicas starting at once on an empty store
 * serialize on the table lock; the later ones find the key and use it instead of replacing it.
 */
async function createFirstKey(db: Db, master: readonly Buffer[], id: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE");
    if ((await tx.query("SELECT 1 FROM data_keys LIMIT 1")).rowCount > 0) return;
    await tx.query("INSERT INTO data_keys (id, wrapped, active) VALUES ($1, $2, true)", [id, wrapKey(master[0], newDataKey(id))]);
    await tx.query(`NOTIFY ${KEYS_CHANNEL}`);
  });
}

const dataKey = (k: DataKey): DataKey => ({ id: k.id, key: k.key });

/**
 * Creates a new data key and makes it the active one (one transaction, `within` run in it too); tells other replicas.
 * It is wrapped by the master key that unwraps the active one, so the store's keys stay under one master key
 * (during a rotation of the master key, the previous one until `conveer keys rotate-master` re-wraps them all).
 */
export async function createActiveKey(db: Db, masterKeys: MasterKeys, id: string, within?: (tx: Transaction) => Promise<void>): Promise<string> {
  const master = masterList(masterKeys);
  const key = newDataKey(id);
  await db.transaction(async (tx) => {
    // Serialize concurrent creators (the unique index allows one active key) and master key rotations.
    await tx.query("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE");
    // A key wrapped under another master key would lock out every replica that has the right one.
    const cur = await tx.query<{ id: string; wrapped: string }>("SELECT id, wrapped FROM data_keys WHERE active");
    let wrapBy = master[0];
    for (const row of cur.rows) wrapBy = unwrapMaster(master, row.id, row.wrapped).by;
    await tx.query("UPDATE data_keys SET active = false WHERE active");
    await tx.query("INSERT INTO data_keys (id, wrapped, active) VALUES ($1, $2, true)", [id, wrapKey(wrapBy, key)]);
    await within?.(tx);
    await tx.query(`NOTIFY ${KEYS_CHANNEL}`);
  });
  return id;
}

/** One table of sealed columns that key rotation re-encrypts. */
export type SealedColumn = { table: string; column: string; aadPrefix: string };

/** The sealed columns in the store. */
export const SEALED_COLUMNS: SealedColumn[] = [
  { table: "accounts", column: "secrets", aadPrefix: "account:" },
  { table: "proxies", column: "password_sealed", aadPrefix: "proxy:" },
];

/** Options of reencryptAll: rows per transaction, a progress callback (awaited), and a signal that stops it between batches. */
export type ReencryptOptions = { batchSize?: number; onProgress?: (done: number, remaining: number) => unknown; signal?: AbortSignal };

/**
 * Re-encrypts every sealed value under the vault's active key, in batches of `batchSize` rows
 * (each its own short transaction, rows taken with SKIP LOCKED so live traffic is not blocked).
 * An aborted `signal` stops it between batches (throwing its reason); what was done stays done.
 */
export async function reencryptAll(db: Db, vault: Vault, opts: ReencryptOptions = {}): Promise<number> {
  const batch = opts.batchSize ?? 500;
  let done = 0;
  for (const col of SEALED_COLUMNS) {
    for (;;) {
      opts.signal?.throwIfAborted();
      const n = await db.transaction(async (tx) => {
        const target = vault.activeKeyId();
        const r = await tx.query<{ id: string; sealed: string }>(
          `SELECT id, ${col.column} AS sealed FROM ${col.table} WHERE key_id <> $1 AND key_id <> '' ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
          [target, batch],
        );
        for (const row of r.rows) {
          const plain = await vault.open(row.sealed, col.aadPrefix + row.id);
          const { sealed, keyId } = vault.seal(plain, col.aadPrefix + row.id);
          await tx.query(`UPDATE ${col.table} SET ${col.column} = $2, key_id = $3 WHERE id = $1`, [row.id, sealed, keyId]);
        }
        return r.rows.length;
      });
      done += n;
      await opts.onProgress?.(done, await remainingUnder(db, vault.activeKeyId()));
      if (n === 0) break;
    }
  }
  return done;
}

/** How many sealed values are not yet under the given key. */
export async function remainingUnder(db: Queryable, keyId: string): Promise<number> {
  let total = 0;
  for (const col of SEALED_COLUMNS) {
    const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${col.table} WHERE key_id <> $1 AND key_id <> ''`, [keyId]);
    total += r.rows[0].n;
  }
  return total;
}

/**
 * How many sealed values are under a key older than `keyId` (made active before it): what a
 * rotation to `keyId` still had to do, even after a newer rotation moved values on past it.
 */
export async function remainingBefore(db: Queryable, keyId: string): Promise<number> {
  let total = 0;
  for (const col of SEALED_COLUMNS) {
    const r = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${col.table} t JOIN data_keys k ON k.id = t.key_id
       WHERE t.key_id <> $1 AND k.created_at < (SELECT created_at FROM data_keys WHERE id = $1)`,
      [keyId],
    );
    total += r.rows[0].n;
  }
  return total;
}
