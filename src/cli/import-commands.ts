import { createReadStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import type { Config } from "../config/config.ts";
import { AccountService, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { parseStatus } from "../accounts/account-status.ts";
import { readAccountImportFile } from "../accounts/import-file.ts";
import { readProxyImportFile } from "../proxies/proxy-url.ts";
import { cliClient } from "./cli-client.ts";
import { progressBar } from "./progress.ts";
import { commandGroup } from "./options.ts";
import { ACCOUNTS_DESCRIPTION } from "./accounts-commands.ts";
import { PROXIES_DESCRIPTION } from "./proxies-commands.ts";

const BATCH = 500;

/** Counts lines for the progress bar's total without holding the file. */
async function countLines(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path)) {
    for (const b of chunk as Buffer) if (b === 10) n++;
  }
  return n;
}

/** Shared loop: read items, send them in batches, report per-line errors to FILE.errors. */
async function importFile<T>(
  path: string,
  items: AsyncIterable<{ line: number; item?: T; error?: string }>,
  send: (batch: T[]) => Promise<{ index: number; error: string }[]>,
): Promise<void> {
  const bar = progressBar(`importing ${path}`, await countLines(path));
  const errors: string[] = [];
  let ok = 0;
  let batch: { line: number; item: T }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const results = await send(batch.map((b) => b.item));
    for (const r of results) {
      if (r.error) errors.push(`line ${batch[r.index].line}: ${r.error}`);
      else ok++;
    }
    bar.increment(batch.length);
    batch = [];
  };
  for await (const p of items) {
    if (p.error || !p.item) {
      errors.push(p.error ?? `line ${p.line}: empty`);
      bar.increment();
      continue;
    }
    batch.push({ line: p.line, item: p.item });
    if (batch.length >= BATCH) await flush();
  }
  await flush();
  bar.stop();
  if (errors.length) await writeFile(`${path}.errors`, errors.join("\n") + "\n");
  process.stdout.write(`imported ${ok}, failed ${errors.length}${errors.length ? ` (see ${path}.errors)` : ""}\n`);
  for (const e of errors.slice(0, 10)) process.stderr.write(`  ${e}\n`);
  if (errors.length > 10) process.stderr.write(`  … and ${errors.length - 10} more\n`);
  // A script must be able to tell that some lines were not imported.
  if (errors.length) process.exitCode = 1;
}

/** accounts import and proxies import: send a file to the running server. */
export function registerImportCommands(program: Command, getConfig: () => Config): void {
  commandGroup(program, "accounts", ACCOUNTS_DESCRIPTION)
    .command("import <file>")
    .description("import accounts from CSV (header: platform,login,password,phone,…) or JSON Lines; bad lines are reported, good ones kept")
    .action(async (file: string) => {
      const config = getConfig();
      const client = cliClient(AccountService, "account", config);
      await importFile(file, readAccountImportFile(file), async (items) => {
        const res = await client.importAccounts({
          accounts: items.map((i) => ({
            platform: i.platform,
            login: i.login,
            password: i.password,
            phone: i.phone,
            additional: i.additional,
            labels: i.labels,
            status: i.status ? (parseStatus(i.status) ?? AccountStatus.UNSPECIFIED) : AccountStatus.UNSPECIFIED,
          })),
        });
        return res.results;
      });
    });

  commandGroup(program, "proxies", PROXIES_DESCRIPTION)
    .command("import <file>")
    .description("add proxies from a file: one URL per line, CSV (url,country,provider,tags,capacity; tags separated by semicolons, or by commas inside a quoted cell) or JSON Lines")
    .action(async (file: string) => {
      const config = getConfig();
      const client = cliClient(ProxyService, "proxy", config);
      await importFile(file, readProxyImportFile(file), async (items) => (await client.addProxies({ proxies: items })).results);
    });
}
