import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Account, CreateAccountRequest, StatusChange } from "../gen/conveer/v1/account_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { invalidArgument, notFound, quote } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import { checkId } from "../store/ids.ts";
import { createAccount, importAccounts } from "./account-create.ts";
import { credentials, updateCredentials } from "./account-credentials.ts";
import { toAccount, toStatusChange } from "./account-messages.ts";
import { assertTransition, statusName } from "./account-status.ts";
import * as store from "./account-store.ts";
import type { AccountsContext, AccountsDeps } from "./accounts-context.ts";

export type { AccountsDeps } from "./accounts-context.ts";
export { toAccount } from "./account-messages.ts";

/**
 * The accounts domain: plain functions over the store and the vault, transport-free. The parts:
 * account-create.ts (create, import), account-credentials.ts (the sealed secrets), the reads and
 * the status change below, account-status.ts (the transition table), account-store.ts (SQL).
 */
export function createAccounts(deps: AccountsDeps) {
  const ctx: AccountsContext = { ...deps };
  return {
    /** Creates one account with sealed credentials. */
    create: (req: CreateAccountRequest, author: string) => createAccount(ctx, req, author),
    /** Creates many; each item succeeds or fails on its own (a savepoint per item). */
    importMany: (items: CreateAccountRequest[], author: string) => importAccounts(ctx, items, author),
    /** One account (no secrets). */
    get: (id: string) => getAccount(ctx, id),
    /** Decrypted credentials; writes the audit record in the same transaction as the read. */
    credentials: (id: string, tokenName: string, peer: string) => credentials(ctx, id, tokenName, peer),
    /** Validated status change with history; answers the previous status. */
    updateStatus: (id: string, to: AccountStatus, reason: string, author: string) => updateStatus(ctx, id, to, reason, author),
    /** A keyset page of accounts and the total for the filter. */
    list: (platform: string, status: AccountStatus, size: number, token: string) => listAccounts(ctx, platform, status, size, token),
    /** Replaces password/phone when given and merges `additional` (an empty value removes a key). */
    updateCredentials: (id: string, change: { password: string; phone: string; additional: Record<string, string> }) => updateCredentials(ctx, id, change),
    /** Status history, newest first. */
    history: (id: string) => statusHistory(ctx, id),
  };
}

/** The accounts domain's API. */
export type Accounts = ReturnType<typeof createAccounts>;

async function mustGet(ctx: AccountsContext, id: string, field = "account_id"): Promise<store.PublicAccountRow> {
  checkId(id, field);
  const row = await store.getPublicAccount(ctx.db, id);
  if (!row) throw notFound("account", id);
  return row;
}

/** One account (no secrets). */
export async function getAccount(ctx: AccountsContext, id: string): Promise<Account> {
  return toAccount(await mustGet(ctx, id));
}

/** Validated status change with history; answers the previous status. */
export async function updateStatus(ctx: AccountsContext, id: string, to: AccountStatus, reason: string, author: string): Promise<{ previous: AccountStatus; changed: boolean }> {
  checkId(id, "account_id");
  if (to === AccountStatus.UNSPECIFIED || !(to in AccountStatus)) {
    throw invalidArgument("status", `must be one of ${[2, 3, 4, 5, 6].map((s) => statusName(s)).join(", ")}, got ${to}`);
  }
  if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
  return ctx.db.transaction(async (tx) => {
    const row = await store.lockAccount(tx, id);
    if (!row) throw notFound("account", id);
    const from = row.status as AccountStatus;
    if (from === to) return { previous: from, changed: false };
    assertTransition(from, to);
    await store.setStatus(tx, id, from, to, reason, author);
    return { previous: from, changed: true };
  });
}

/** A keyset page of accounts and the total for the filter. */
export async function listAccounts(ctx: AccountsContext, platform: string, status: AccountStatus, size: number, token: string): Promise<{ accounts: Account[]; next: string; total: number }> {
  if (platform && !isPlatform(platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(platform)}`);
  if (!(status in AccountStatus)) throw invalidArgument("status", `is not a known AccountStatus (${status})`);
  const limit = pageSize(size);
  const filter = { platform, status };
  const after = decodePageToken(token, filter);
  const [rows, total] = await Promise.all([store.listAccounts(ctx.db, filter, after, limit + 1), store.countAccounts(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "";
  return { accounts: page.map(toAccount), next, total };
}

/** Status history, newest first. */
export async function statusHistory(ctx: AccountsContext, id: string): Promise<StatusChange[]> {
  await mustGet(ctx, id);
  return (await store.statusHistory(ctx.db, id)).map(toStatusChange);
}
