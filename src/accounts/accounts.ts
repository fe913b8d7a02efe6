import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Account, CreateAccountRequest, StatusChange } from "../gen/conveer/v1/account_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { invalidArgument, notFound, quote } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import { checkId } from "../store/ids.ts";
import { createAccount, importAccounts } from "./account-create.ts";
import { credentials, updateCredentials } from "./account-credentials.ts";
import { toAccount, toStatusChange } from "./account-messages.ts";
import { allowedInto, assertTransition, shortStatus, statusName } from "./account-status.ts";
import type { Actor } from "../audit/audit-log.ts";
import * as store from "./account-store.ts";
import { accountsContext } from "./accounts-context.ts";
import type { AccountsContext, AccountsDeps } from "./accounts-context.ts";
import { deleteAccount } from "./account-delete.ts";
import type { Deleter } from "./account-delete.ts";

export type { AccountPeers, AccountsDeps } from "./accounts-context.ts";
export { toAccount } from "./account-messages.ts";

/**
 * The accounts domain: plain functions over the store and the vault, transport-free. The parts:
 * account-create.ts (create, import), account-credentials.ts (the sealed secrets), the reads and
 * the status change below, account-status.ts (the transition table), account-store.ts (SQL).
 */
export function createAccounts(deps: AccountsDeps) {
  const ctx = accountsContext(deps);
  return {
    /** Creates one account with sealed credentials. */
    create: (req: CreateAccountRequest, author: string, peer = "") => createAccount(ctx, req, { name: author, peer }),
    /** Creates many; each item succeeds or fails on its own (a savepoint per item). */
    importMany: (items: CreateAccountRequest[], author: string, peer = "") => importAccounts(ctx, items, { name: author, peer }),
    /** One account (no secrets). */
    get: (id: string) => getAccount(ctx, id),
    /** Decrypted credentials; writes the audit record in the same transaction as the read. */
    credentials: (id: string, tokenName: string, peer: string) => credentials(ctx, id, tokenName, peer),
    /** Validated status change with history; answers the previous status. */
    updateStatus: (id: string, to: AccountStatus, reason: string, author: string, peer = "") => updateStatus(ctx, id, to, reason, { name: author, peer }),
    /** A keyset page of accounts and the total for the filter. */
    list: (filter: ListFilter, size: number, token: string) => listAccounts(ctx, filter, size, token),
    /** Replaces password/phone when given and merges `additional` (an empty value removes a key). */
    updateCredentials: (id: string, change: { password: string; phone: string; additional: Record<string, string> }, author: string, peer = "") =>
      updateCredentials(ctx, id, change, { name: author, peer }),
    /** Soft delete: lets go of the proxy, warming task and pending activation, then DELETED (history, audit); idempotent. */
    delete: (id: string, reason: string, who: Deleter) => deleteAccount(ctx, id, reason, who),
    /** Status history, newest first. */
    history: (id: string) => statusHistory(ctx, id),
  };
}

/** The accounts domain's API. */
export type Accounts = ReturnType<typeof createAccounts>;

async function mustGet(ctx: AccountsContext, id: string, field = "account_id"): Promise<store.PublicAccountRow> {
  checkId(id, field);
  const row = await ctx.publicAccount(id);
  if (!row) throw notFound("account", id);
  return row;
}

/** One account (no secrets). */
export async function getAccount(ctx: AccountsContext, id: string): Promise<Account> {
  return toAccount(await mustGet(ctx, id));
}

/** Validated status change with history and an audit entry ("FROM -> TO: reason"); answers the previous status. */
export async function updateStatus(ctx: AccountsContext, id: string, to: AccountStatus, reason: string, who: Actor): Promise<{ previous: AccountStatus; changed: boolean }> {
  checkId(id, "account_id");
  if (to === AccountStatus.UNSPECIFIED || !(to in AccountStatus)) {
    throw invalidArgument("status", `must be one of ${[2, 3, 4, 5, 6].map((s) => statusName(s)).join(", ")}, got ${to}`);
  }
  if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
  const r = await store.changeStatus(ctx.db, id, { to, from: allowedInto(to), reason, names: SHORT_NAMES, suffix: reason ? `: ${reason}` : "" }, who);
  if (!r) throw notFound("account", id);
  const from = r.status as AccountStatus;
  if (!r.changed && from !== to) assertTransition(from, to);
  return { previous: from, changed: r.changed };
}

/** shortStatus of every status, indexed by its number (the audit detail the store writes). */
const SHORT_NAMES: string[] = [];
for (const s of Object.values(AccountStatus)) if (typeof s === "number") SHORT_NAMES[s] = shortStatus(s);

/** ListAccounts' filter as asked: labels as "key=value" selector items. */
export type ListFilter = { platform: string; status: AccountStatus; labelSelector: string[]; loginPrefix: string };

/** Parses a label selector: every item "key=value" (key non-empty), at most 20, no key twice. */
export function parseLabelSelector(items: string[]): Record<string, string> {
  if (items.length > 20) throw invalidArgument("label_selector", `must have at most 20 items, got ${items.length}`);
  const labels: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw invalidArgument("label_selector", `items must be "key=value", got ${quote(item)}`);
    const key = item.slice(0, eq);
    if (Object.hasOwn(labels, key)) throw invalidArgument("label_selector", `names the label ${quote(key)} twice`);
    labels[key] = item.slice(eq + 1);
  }
  return labels;
}

/** A keyset page of accounts and the total for the filter. */
export async function listAccounts(ctx: AccountsContext, f: ListFilter, size: number, token: string): Promise<{ accounts: Account[]; next: string; total: number }> {
  const { platform, status, loginPrefix } = f;
  if (platform && !isPlatform(platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(platform)}`);
  if (!(status in AccountStatus)) throw invalidArgument("status", `is not a known AccountStatus (${status})`);
  if (loginPrefix.length > 200) throw invalidArgument("login_prefix", `must be at most 200 characters, got ${loginPrefix.length}`);
  const limit = pageSize(size);
  const filter = { platform, status, labels: parseLabelSelector(f.labelSelector), loginPrefix };
  // The token fingerprints the filter as the older listings did, so their tokens stay valid.
  const fingerprint = Object.keys(filter.labels).length || loginPrefix ? filter : { platform, status };
  const after = decodePageToken(token, fingerprint);
  const [rows, total] = await Promise.all([store.listAccounts(ctx.db, filter, after, limit + 1), store.countAccounts(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, fingerprint) : "";
  return { accounts: page.map(toAccount), next, total };
}

/** Status history, newest first. */
export async function statusHistory(ctx: AccountsContext, id: string): Promise<StatusChange[]> {
  await mustGet(ctx, id);
  return (await store.statusHistory(ctx.db, id)).map(toStatusChange);
}
