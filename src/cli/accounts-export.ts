import { closeSync, constants, createWriteStream, fchmodSync, fstatSync, ftruncateSync, openSync } from "node:fs";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import { AccountSchema, AccountService, GetCredentialsResponseSchema } from "../gen/conveer/v1/account_pb.js";
import type { Account, GetCredentialsResponse } from "../gen/conveer/v1/account_pb.js";
import { messageOf } from "../errors.ts";
import type { Config } from "../config/config.ts";
import { cliClient } from "./cli-client.ts";
import { ACCOUNTS_DESCRIPTION, ACCOUNT_COLUMNS, accountPages, withAccountFilters } from "./accounts-commands.ts";
import type { AccountFilter } from "./accounts-commands.ts";
import { commandGroup, intBetween, timeText } from "./options.ts";
import { csvLine } from "./output.ts";

type ExportOptions = AccountFilter & { format: "json" | "csv"; withCredentials?: boolean; out?: string; pageSize: number };

/** How many GetCredentials calls one export keeps in flight. */
const CREDENTIAL_READS = 8;

/**
 * `conveer accounts export`: every account matching the filters, streamed page by page (never the
 * whole set in memory) as JSON Lines or CSV. With --with-credentials each account's credentials
 * are read (GetCredentials: the credentials:read scope, each read audited by the server). Exits 1
 * when any item failed, saying how many; a token without the scope stops the export at once.
 */
export function registerAccountExport(program: Command, getConfig: () => Config): void {
  const client = () => cliClient(AccountService, "account", getConfig());
  const accounts = commandGroup(program, "accounts", ACCOUNTS_DESCRIPTION);
  withAccountFilters(accounts.command("export").description("export every matching account as JSON Lines or CSV, page by page; credentials only with --with-credentials"))
    .requiredOption("--format <format>", "json (one account per line, proto JSON names) or csv", (v) => {
      if (v !== "json" && v !== "csv") throw new InvalidArgumentError(`must be json or csv, got ${JSON.stringify(v)}`);
      return v;
    })
    .option("--with-credentials", "include login, password, phone and additional data (needs the credentials:read scope; every read is audited)")
    .option("--out <file>", "write to this file (created 0600) instead of standard output")
    .option("--page-size <n>", "accounts per ListAccounts page", intBetween(1, 1000), 500)
    .action(async (o: ExportOptions) => {
      // 0600 also when the file was there: open's mode applies only to a file it creates.
      const out: Writable = o.out ? createWriteStream("", { fd: private600(o.out) }) : process.stdout;
      try {
        const { exported, failed } = await exportAccounts(client(), o, out);
        process.stderr.write(`exported ${exported} account(s)${failed ? `, failed ${failed}` : ""}${o.out ? ` to ${o.out}` : ""}\n`);
        if (failed) process.exitCode = 1;
      } finally {
        if (out !== process.stdout) await new Promise<void>((resolve) => out.end(resolve));
      }
    });
}

async function exportAccounts(client: Client<typeof AccountService>, o: ExportOptions, out: Writable): Promise<{ exported: number; failed: number }> {
  const write = async (s: string) => {
    if (!out.write(s)) await once(out, "drain");
  };
  const columns = [...ACCOUNT_COLUMNS, ["updated", (a: Account) => timeText(a.updatedAt)] as const, ["has_phone", (a: Account) => String(a.hasPhone)] as const];
  if (o.format === "csv") await write(csvLine([...columns.map(([h]) => h), ...(o.withCredentials ? ["password", "phone", "additional"] : [])]));
  let exported = 0;
  let failed = 0;
  for await (const page of accountPages(client, o, o.pageSize)) {
    const creds = o.withCredentials ? await credentialsOf(client, page) : [];
    for (const [i, a] of page.entries()) {
      const c = creds[i];
      if (c instanceof Error) {
        failed++;
        if (failed <= 10) process.stderr.write(`account ${a.id}: ${messageOf(c)}\n`);
        continue;
      }
      if (o.format === "json") {
        const obj = toJson(AccountSchema, a, { alwaysEmitImplicit: true }) as Record<string, unknown>;
        if (c) obj.credentials = toJson(GetCredentialsResponseSchema, c, { alwaysEmitImplicit: true });
        await write(JSON.stringify(obj) + "\n");
      } else {
        await write(csvLine([...columns.map(([, v]) => String(v(a))), ...(c ? [c.password, c.phone, Object.keys(c.additional).length ? JSON.stringify(c.additional) : ""] : [])]));
      }
      exported++;
    }
  }
  if (failed > 10) process.stderr.write(`… and ${failed - 10} more\n`);
  return { exported, failed };
}

/**
 * The credentials of a page's accounts, in order, CREDENTIAL_READS at a time; an item that failed
 * is its error. A refused token fails every item alike, so it ends the export with one message.
 */
async function credentialsOf(client: Client<typeof AccountService>, page: readonly Account[]): Promise<(GetCredentialsResponse | Error)[]> {
  const out: (GetCredentialsResponse | Error)[] = new Array(page.length);
  let next = 0;
  const worker = async () => {
    while (next < page.length) {
      const i = next++;
      out[i] = await client.getCredentials({ accountId: page[i].id }).catch((err: unknown) => {
        if (err instanceof ConnectError && (err.code === Code.PermissionDenied || err.code === Code.Unauthenticated)) {
          throw new Error(`reading credentials needs a token with the credentials:read scope (CONVEER_TOKEN): ${err.rawMessage}`);
        }
        return err instanceof Error ? err : new Error(String(err));
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(CREDENTIAL_READS, page.length) }, worker));
  return out;
}

/**
 * Opens (creating or truncating) a file only its owner can read, whatever mode it had; what is not
 * a regular file (/dev/stdout, a FIFO, /dev/null) is written as it is and its mode left alone.
 */
function private600(path: string): number {
  // Emptied only once narrowed: a file the mode cannot be changed on (another user's) keeps its content.
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT, 0o600);
  try {
    if (fstatSync(fd).isFile()) {
      fchmodSync(fd, 0o600);
      ftruncateSync(fd, 0);
    }
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
