import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Account, CreateAccountRequest } from "../gen/conveer/v1/account_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { AppError, invalidArgument, quote } from "../errors.ts";
import type { Queryable } from "../store/db.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import { inSavepoint } from "../store/savepoint.ts";
import type { Actor } from "../audit/audit-log.ts";
import { toAccount } from "./account-messages.ts";
import { shortStatus } from "./account-status.ts";
import * as store from "./account-store.ts";
import type { AccountRow } from "./account-store.ts";
import { sealSecrets } from "./accounts-context.ts";
import type { AccountsContext } from "./accounts-context.ts";

/** New accounts: one (CreateAccount) or many, each on its own (ImportAccounts). */

const PHONE = /^\+[1-9]\d{9,14}$/;

/** An optional phone number in E.164. */
export function checkPhone(phone: string): void {
  if (phone && !PHONE.test(phone)) throw invalidArgument("phone", `must be E.164 like +79991234567, got ${quote(phone)}`);
}

/** Validates a new account's fields; throws INVALID_ARGUMENT naming the first wrong one. */
export function validateNew(req: CreateAccountRequest): void {
  if (!req.platform) throw invalidArgument("platform", `is required: one of ${PLATFORMS.join(", ")}`);
  if (!isPlatform(req.platform)) throw invalidArgument("platform", `must be one of ${PLATFORMS.join(", ")}, got ${quote(req.platform)}`);
  if (!req.login.trim()) throw invalidArgument("login", "is required");
  if (req.login.length > 256) throw invalidArgument("login", `must be at most 256 characters, got ${req.login.length}`);
  if (!req.password) throw invalidArgument("password", "is required");
  checkPhone(req.phone);
  if (req.status !== AccountStatus.UNSPECIFIED && !(req.status in AccountStatus)) throw invalidArgument("status", `is not a known AccountStatus (${req.status})`);
  if (req.status === AccountStatus.DELETED) throw invalidArgument("status", "cannot be DELETED for a new account");
  // A key ListAccounts' label_selector ("key=value", split at the first "=") could never select: the same rule as parseLabelSelector.
  for (const key of Object.keys(req.labels)) {
    if (key === "" || key.includes("=")) throw invalidArgument("labels", `keys must be non-empty and without "=", got ${quote(key)}`);
  }
}

async function insert(ctx: AccountsContext, q: Queryable, req: CreateAccountRequest, who: Actor, action: "account.create" | "account.import"): Promise<AccountRow> {
  const id = ctx.newId();
  const { sealed, keyId } = sealSecrets(ctx, id, { password: req.password, phone: req.phone, additional: { ...req.additional } });
  const status = req.status || AccountStatus.ACTIVE;
  const login = req.login.trim();
  return store.insertAccount(
    q,
    { id, platform: req.platform, login, status, status_reason: "created", secrets: sealed, key_id: keyId, has_phone: Boolean(req.phone), labels: { ...req.labels } },
    who,
    { action, detail: `${req.platform} login ${quote(login)}, ${shortStatus(status)}` },
  );
}

function duplicate(req: CreateAccountRequest): AppError {
  return new AppError("ALREADY_EXISTS", `an account with login ${quote(req.login)} already exists on ${req.platform}`);
}

/** Creates one account with sealed credentials. */
export async function createAccount(ctx: AccountsContext, req: CreateAccountRequest, who: Actor): Promise<Account> {
  validateNew(req);
  try {
    return toAccount(await insert(ctx, ctx.db, req, who, "account.create"));
  } catch (err) {
    if (sqlState(err) === PgError.uniqueViolation) throw duplicate(req);
    throw err;
  }
}

/** Creates many; each item succeeds or fails on its own (a savepoint per item). */
export async function importAccounts(ctx: AccountsContext, items: CreateAccountRequest[], who: Actor): Promise<{ index: number; accountId: string; error: string }[]> {
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
  await ctx.db.transaction(async (tx) => {
    for (const { index, req } of valid) {
      try {
        const row = await inSavepoint(tx, () => insert(ctx, tx, req, who, "account.import"));
        results.push({ index, accountId: row.id, error: "" });
      } catch (err) {
        if (sqlState(err) !== PgError.uniqueViolation) throw err;
        results.push({ index, accountId: "", error: duplicate(req).message });
      }
    }
  });
  return results.sort((a, b) => a.index - b.index);
}
