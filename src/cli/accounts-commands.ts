import type { Command } from "commander";
import type { Client } from "@connectrpc/connect";
import type { Config } from "../config/config.ts";
import { AccountSchema, AccountService, AccountStatus, StatusChangeSchema } from "../gen/conveer/v1/account_pb.js";
import type { Account } from "../gen/conveer/v1/account_pb.js";
import { cliClient } from "./cli-client.ts";
import { commandGroup, enumName, enumValue, intBetween, labelSelector, pages, platformName, shortName, timeText } from "./options.ts";
import { outputFormat, printMessages, printPages } from "./output.ts";
import type { Column, OutputFormat } from "./output.ts";

/** The `accounts` group's help line. */
export const ACCOUNTS_DESCRIPTION = "accounts: list, look at, delete, export and import";

/** The account columns of a table or CSV (JSON has every field). */
export const ACCOUNT_COLUMNS: readonly Column<Account>[] = [
  ["id", (a) => a.id],
  ["platform", (a) => a.platform],
  ["login", (a) => a.login],
  ["status", (a) => enumName(AccountStatus, a.status)],
  ["reason", (a) => a.statusReason],
  ["labels", (a) => labelsText(a.labels)],
  ["created", (a) => timeText(a.createdAt)],
];

/** Labels as `k=v;k=v` (sorted), the form a table or CSV cell shows. */
export function labelsText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(";");
}

/** The filters `accounts list` and `accounts export` share. */
export type AccountFilter = { platform?: string; status?: AccountStatus; label: string[]; loginPrefix: string };

/** Adds the account filters to a command. */
export function withAccountFilters(cmd: Command): Command {
  return cmd
    .option("--platform <name>", "only this platform (vk, telegram, mail, max)", platformName)
    .option("--status <name>", "only this status: CREATING, ACTIVE, WARMING, BANNED, SUSPENDED or DELETED", enumValue(AccountStatus, "ACCOUNT_STATUS_"))
    .option("--label <key=value>", "only accounts with this label (repeat for more: all must match)", labelSelector, [])
    .option("--login-prefix <text>", "only logins starting with this text (case-sensitive)", "");
}

/** Every page of ListAccounts for the filter, `pageSize` at a time, up to `limit`. */
export function accountPages(client: Client<typeof AccountService>, f: AccountFilter, pageSize: number, limit = Infinity): AsyncGenerator<Account[]> {
  return pages(
    async (pageToken, size) => {
      const r = await client.listAccounts({ platform: f.platform ?? "", status: f.status ?? AccountStatus.UNSPECIFIED, labelSelector: f.label, loginPrefix: f.loginPrefix, pageSize: size, pageToken });
      return { items: r.accounts, next: r.nextPageToken };
    },
    pageSize,
    limit,
  );
}

/** `conveer accounts list|get|history|delete` (export: accounts-export.ts; import: import-commands.ts). */
export function registerAccountsCommands(program: Command, getConfig: () => Config): void {
  const client = () => cliClient(AccountService, "account", getConfig());
  const accounts = commandGroup(program, "accounts", ACCOUNTS_DESCRIPTION);

  withAccountFilters(accounts.command("list").description("list accounts, oldest first (every page, up to --limit)"))
    .option("--limit <n>", "at most this many accounts (default: every page)", intBetween(1, Number.MAX_SAFE_INTEGER))
    .option("--output <format>", "table, json (one account per line) or csv", outputFormat, "table")
    .action(async (o: AccountFilter & { limit?: number; output: OutputFormat }) => {
      await printPages(o.output, AccountSchema, accountPages(client(), o, 1000, o.limit), ACCOUNT_COLUMNS);
    });

  accounts
    .command("get <id>")
    .description("one account (never its credentials)")
    .option("--output <format>", "table, json or csv", outputFormat, "table")
    .action(async (id: string, o: { output: OutputFormat }) => {
      const a = await client().getAccount({ accountId: id });
      printMessages(o.output, AccountSchema, [a], [...ACCOUNT_COLUMNS, ["updated", (x) => timeText(x.updatedAt)], ["has_phone", (x) => String(x.hasPhone)]]);
    });

  accounts
    .command("history <id>")
    .description("an account's status changes, newest first: who, when, from, to, why")
    .option("--output <format>", "table, json (one change per line) or csv", outputFormat, "table")
    .action(async (id: string, o: { output: OutputFormat }) => {
      const r = await client().getStatusHistory({ accountId: id });
      printMessages(o.output, StatusChangeSchema, r.changes, [
        ["time", (c) => timeText(c.changedAt)],
        // The change's statuses are the enum's names (ACCOUNT_STATUS_ACTIVE): shown as `accounts list` shows them (ACTIVE).
        ["from", (c) => shortName(c.fromStatus, "ACCOUNT_STATUS_")],
        ["to", (c) => shortName(c.toStatus, "ACCOUNT_STATUS_")],
        ["author", (c) => c.author],
        ["reason", (c) => c.reason],
      ]);
    });

  accounts
    .command("delete <id>")
    .description("delete an account (soft: DELETED with the reason; releases its proxy, stops its warming, cancels a pending number)")
    .requiredOption("--reason <text>", "why (kept in the status history and the audit log)")
    .action(async (id: string, o: { reason: string }) => {
      const r = await client().deleteAccount({ accountId: id, reason: o.reason });
      const freed = [r.releasedProxyId && `released proxy ${r.releasedProxyId}`, r.stoppedWarmingTaskId && `stopped warming task ${r.stoppedWarmingTaskId}`, r.cancelledActivationId && `cancelled activation ${r.cancelledActivationId}`].filter(Boolean);
      process.stdout.write(`${r.deleted ? "deleted" : "already deleted"} ${id}${freed.length ? `; ${freed.join("; ")}` : ""}\n`);
    });
}
