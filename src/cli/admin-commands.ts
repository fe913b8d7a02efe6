import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { pino } from "pino";
import type { Config } from "../config/config.ts";
import { createToken, listTokens, revokeToken } from "../auth/tokens.ts";
import { listAudit } from "../accounts/account-store.ts";
import type { AuditRow } from "../accounts/account-store.ts";
import type { Db } from "../store/db.ts";
import { openStore } from "../store/open.ts";
import { createIdGenerator } from "../store/ids.ts";
import { createActiveKey, createVault, reencryptAll, remainingUnder } from "../vault/vault.ts";
import { loadMasterKey } from "../vault/master-key.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";
import { progressBar } from "./progress.ts";

/** Parses an option that must be a whole number of at least 1. */
function positiveInt(v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError(`must be a whole number of at least 1, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Runs fn with the store opened directly (admin work that must not depend on a running server). */
async function withStore<T>(config: Config, fn: (db: Db) => Promise<T>): Promise<T> {
  const release = config.databaseUrl ? async () => {} : await holdDataDirLock(config.dataDir);
  const db = await openStore(config, pino({ level: "warn" }));
  try {
    return await fn(db);
  } finally {
    await db.close();
    await release();
  }
}

/** The last column of `conveer audit`: what was read, or the delete and its reason. */
function auditWhat(r: AuditRow): string {
  if (r.action === "delete") return `deleted${r.reason ? `: ${r.reason}` : ""}`;
  return r.secret === "proxy" ? `proxy ${r.proxy_id}` : "credentials";
}

/** token, keys and audit: commands that work on the store itself. */
export function registerAdminCommands(program: Command, getConfig: () => Config): void {
  const token = program.command("token").description("API tokens (stored only as hashes)");
  token
    .command("create")
    .description("create a token; its secret is printed once")
    .requiredOption("--name <name>", "a unique name, recorded in audit and status history")
    .requiredOption("--scopes <scopes>", "comma-separated, e.g. 'accounts:read,proxies:write' or '*'")
    .action(async (o: { name: string; scopes: string }) => {
      const secret = await withStore(getConfig(), (db) =>
        createToken(db, createIdGenerator()(), o.name, o.scopes.split(",").map((s) => s.trim()).filter(Boolean)),
      );
      process.stdout.write(`${secret}\n`);
      process.stderr.write(`token ${JSON.stringify(o.name)} created; this is the only time its secret is shown. Send it as "authorization: Bearer <token>" (the CLI reads CONVEER_TOKEN).\n`);
    });
  token
    .command("list")
    .description("list tokens (names and scopes, never secrets)")
    .action(async () => {
      const rows = await withStore(getConfig(), listTokens);
      for (const r of rows) process.stdout.write(`${r.name}\t${r.scopes.join(",")}\t${r.created_at.toISOString()}\t${r.revoked_at ? "revoked " + r.revoked_at.toISOString() : "active"}\n`);
    });
  token
    .command("revoke <name>")
    .description("revoke a token (takes effect within 5 s on every replica)")
    .action(async (name: string) => {
      const ok = await withStore(getConfig(), (db) => revokeToken(db, name));
      if (!ok) throw new Error(`no active token named ${JSON.stringify(name)}`);
      process.stdout.write(`revoked ${name}\n`);
    });

  program
    .command("keys")
    .description("data keys of the credential vault")
    .command("rotate")
    .description("make a new data key active and re-encrypt every secret under it, in batches, while the system runs")
    .option("--batch <n>", "rows per transaction", positiveInt, 500)
    .action(async (o: { batch: number }) => {
      const config = getConfig();
      await withStore(config, async (db) => {
        const newId = createIdGenerator();
        const master = await loadMasterKey(config, pino({ level: "warn" }), db);
        // The vault first: it unwraps every existing key, so a wrong master key fails here, before a
        // new key wrapped under it could become active and lock every replica out.
        const vault = await createVault(db, master, newId);
        try {
          const id = await createActiveKey(db, master, newId());
          await vault.reload();
          if (vault.activeKeyId() !== id) throw new Error(`another rotation made data key ${vault.activeKeyId()} active meanwhile; run \`conveer keys rotate\` again`);
          const total = await remainingUnder(db, id);
          const bar = progressBar("re-encrypting", total);
          let done = 0;
          // Replicas that sealed with the old key before they heard of the new one leave stragglers: sweep until none.
          for (let pass = 0; pass < 20; pass++) {
            done += await reencryptAll(db, vault, { batchSize: o.batch, onProgress: (d) => bar.update(Math.min(total, done + d)) });
            if ((await remainingUnder(db, id)) === 0) break;
            await new Promise((r) => setTimeout(r, 500));
          }
          bar.stop();
          const left = await remainingUnder(db, id);
          if (left > 0) throw new Error(`${left} values are still under older keys; run \`conveer keys rotate\` again`);
          process.stdout.write(`data key ${id} is active; ${done} values re-encrypted\n`);
        } finally {
          await vault.stop();
        }
      });
    });

  program
    .command("audit")
    .description("the audit log, newest first: secret reads (GetCredentials, proxy passwords with proxies:secrets) and account deletions")
    .option("--account <id>", "only this account")
    .option("--limit <n>", "how many", positiveInt, 100)
    .action(async (o: { account?: string; limit: number }) => {
      const rows = await withStore(getConfig(), (db) => listAudit(db, { accountId: o.account, limit: o.limit }));
      process.stdout.write("time\ttoken\taccount\tpeer\tsecret\n");
      for (const r of rows) process.stdout.write(`${r.at.toISOString()}\t${r.token_name}\t${r.account_id}\t${r.peer}\t${auditWhat(r)}\n`);
    });
}
