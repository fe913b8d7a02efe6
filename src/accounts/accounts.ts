import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountSchema, AccountStatus, StatusChangeSchema } from "../gen/conveer/v1/account_pb.js";
import type { Account, CreateAccountRequest, GetCredentialsResponse, StatusChange } from "../gen/conveer/v1/account_pb.js";
import { AppError, invalidArgument, notFound, quote } from "../errors.ts";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import type { Db } from "../store/db.ts";
import { checkId } from "../store/ids.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import type { Vault } from "../vault/vault.ts";
import { assertTransition, statusName } from "./account-status.ts";
import * as store from "./account-store.ts";
import type { AccountRow } from "./account-store.ts";

/** The secrets sealed per account. */
type Secrets = { password: string; phone: string; additional: Record<string, string> };

/** Dependencies of the accounts domain. */
export type AccountsDeps = { db: Db; vault: Vault; newId: () => string };

const PHONE = /^\+[1-9]\d{9,14}$/;

/** The accounts domain: plain functions over the store and the vault, transport-free. */
export function createAccounts({ db, vault, newId }: AccountsDeps) {
  const aad = (id: string) => `account:${id}`;

  function validateNew(req: CreateAccountRequest): void {
    if (!req.platform) throw invalidArgument("platform", `is required: one of ${PLATFORMS.join(", ")}`);
    if (!isPlatform(req.platform)) throw invalidArgument("platform", `must be one of ${PLATFORMS.join(", ")}, got ${quote(req.platform)}`);
    if (!req.login.trim()) throw invalidArgument("login", "is required");
    if (req.login.length > 256) throw invalidArgument("login", `must be at most 256 characters, got ${req.login.length}`);
    if (!req.password) throw invalidArgument("password", "is required");
    if (req.phone && !PHONE.test(req.phone)) throw invalidArgument("phone", `must be E.164 like +79991234567, got ${quote(req.phone)}`);
    if (req.status !== AccountStatus.UNSPECIFIED && !(req.status in AccountStatus)) throw invalidArgument("status", `is not a known AccountStatus (${req.status})`);
    if (req.status === AccountStatus.DELETED) throw invalidArgument("status", "cannot be DELETED for a new account");
  }

  async function insert(q: Parameters<typeof store.insertAccount>[0], req: CreateAccountRequest, author: string): Promise<AccountRow> {
    const id = newId();
    const secrets: Secrets = { password: req.password, phone: req.phone, additional: { ...req.additional } };
    const { sealed, keyId } = vault.seal(JSON.stringify(secrets), aad(id));
    return store.insertAccount(
      q,
      {
        id,
        platform: req.platform,
        login: req.login.trim(),
        status: req.status || AccountStatus.ACTIVE,
        status_reason: "created",
        secrets: sealed,
        key_id: keyId,
        has_phone: Boolean(req.phone),
        labels: { ...req.labels },
      },
      author,
    );
  }

  function duplicate(req: CreateAccountRequest): AppError {
    return new AppError("ALREADY_EXISTS", `an account with login ${quote(req.login)} already exists on ${req.platform}`);
  }

  async function mustGet(id: string, field = "account_id"): Promise<store.PublicAccountRow> {
    checkId(id, field);
    const row = await store.getPublicAccount(db, id);
    if (!row) throw notFound("account", id);
    return row;
  }

  return {
    /** Creates one account with sealed credentials. */
    async create(req: CreateAccountRequest, author: string): Promise<Account> {
      validateNew(req);
      try {
        return toAccount(await db.transaction((tx) => insert(tx, req, author)));
      } catch (err) {
        if (sqlState(err) === PgError.uniqueViolation) throw duplicate(req);
        throw err;
      }
    },

    /** Creates many; each item succeeds or fails on its own (a savepoint per item). */
    async importMany(items: CreateAccountRequest[], author: string): Promise<{ index: number; accountId: string; error: string }[]> {
      if (items.length > 1000) throw invalidArgument("accounts", `must hold at most 1000 items per call, got ${items.length}; split the import`);
      const results: { index: number; accountId: string; error: string }[] = [];
      const valid: { index: number; req: CreateAccountRequest }[] = [];
      items.forEach((req, index) => {
        try {
          validateNew(req);
          valid.push({ index, req });
        } catch (err) {
          results.push({ index, accountId: "", error: (err as Error).message });
        }
      });
      await db.transaction(async (tx) => {
        for (const { index, req } of valid) {
          await tx.query("SAVEPOINT item");
          try {
            const row = await insert(tx, req, author);
            await tx.query("RELEASE SAVEPOINT item");
            results.push({ index, accountId: row.id, error: "" });
          } catch (err) {
            await tx.query("ROLLBACK TO SAVEPOINT item");
            if (sqlState(err) !== PgError.uniqueViolation) throw err;
            results.push({ index, accountId: "", error: duplicate(req).message });
          }
        }
      });
      return results.sort((a, b) => a.index - b.index);
    },

    /** One account (no secrets). */
    async get(id: string): Promise<Account> {
      return toAccount(await mustGet(id));
    },

    /** Decrypted credentials; writes the audit record in the same transaction as the read. */
    async credentials(id: string, tokenName: string, peer: string): Promise<GetCredentialsResponse> {
      checkId(id, "account_id");
      const row = await db.transaction(async (tx) => {
        const r = await store.getAccount(tx, id);
        if (r) await store.insertAudit(tx, id, tokenName, peer);
        return r;
      });
      if (!row) throw notFound("account", id);
      const s = JSON.parse(await vault.open(row.secrets, aad(id))) as Secrets;
      return { $typeName: "conveer.GetCredentialsResponse", login: row.login, password: s.password, phone: s.phone, additional: s.additional };
    },

    /** Validated status change with history; answers the previous status. */
    async updateStatus(id: string, to: AccountStatus, reason: string, author: string): Promise<{ previous: AccountStatus; changed: boolean }> {
      checkId(id, "account_id");
      if (to === AccountStatus.UNSPECIFIED || !(to in AccountStatus)) {
        throw invalidArgument("status", `must be one of ${[2, 3, 4, 5, 6].map((s) => statusName(s)).join(", ")}, got ${to}`);
      }
      if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
      return db.transaction(async (tx) => {
        const row = await store.getAccount(tx, id, true);
        if (!row) throw notFound("account", id);
        const from = row.status as AccountStatus;
        if (from === to) return { previous: from, changed: false };
        assertTransition(from, to);
        await store.setStatus(tx, id, from, to, reason, author);
        return { previous: from, changed: true };
      });
    },

    /** A keyset page of accounts and the total for the filter. */
    async list(platform: string, status: AccountStatus, size: number, token: string): Promise<{ accounts: Account[]; next: string; total: number }> {
      if (platform && !isPlatform(platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(platform)}`);
      if (!(status in AccountStatus)) throw invalidArgument("status", `is not a known AccountStatus (${status})`);
      const limit = pageSize(size);
      const filter = { platform, status };
      const after = decodePageToken(token, filter);
      const [rows, total] = await Promise.all([store.listAccounts(db, filter, after, limit + 1), store.countAccounts(db, filter)]);
      const page = rows.slice(0, limit);
      const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "";
      return { accounts: page.map(toAccount), next, total };
    },

    /** Replaces password/phone when given and merges `additional` (an empty value removes a key). */
    async updateCredentials(id: string, change: { password: string; phone: string; additional: Record<string, string> }): Promise<Account> {
      checkId(id, "account_id");
      if (change.phone && !PHONE.test(change.phone)) throw invalidArgument("phone", `must be E.164 like +79991234567, got ${quote(change.phone)}`);
      const row = await db.transaction(async (tx) => {
        const cur = await store.getAccount(tx, id, true);
        if (!cur) throw notFound("account", id);
        const s = JSON.parse(await vault.open(cur.secrets, aad(id))) as Secrets;
        const additional = { ...s.additional };
        for (const [k, v] of Object.entries(change.additional)) {
          if (v === "") delete additional[k];
          else additional[k] = v;
        }
        const next: Secrets = { password: change.password || s.password, phone: change.phone || s.phone, additional };
        const { sealed, keyId } = vault.seal(JSON.stringify(next), aad(id));
        return store.setSecrets(tx, id, sealed, keyId, Boolean(next.phone));
      });
      return toAccount(row);
    },

    /** Status history, newest first. */
    async history(id: string): Promise<StatusChange[]> {
      await mustGet(id);
      return (await store.statusHistory(db, id)).map((h) =>
        create(StatusChangeSchema, {
          fromStatus: h.from_status === null ? "" : statusName(h.from_status),
          toStatus: statusName(h.to_status),
          reason: h.reason,
          author: h.author,
          changedAt: timestampFromDate(h.changed_at),
        }),
      );
    },
  };
}

/** The accounts domain's API. */
export type Accounts = ReturnType<typeof createAccounts>;

/** Maps a row to the API message (never secrets). */
export function toAccount(row: store.PublicAccountRow): Account {
  return create(AccountSchema, {
    id: row.id,
    platform: row.platform,
    login: row.login,
    status: row.status,
    statusReason: row.status_reason,
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
    hasPhone: row.has_phone,
    labels: row.labels,
  });
}
