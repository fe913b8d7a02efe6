import { setTimeout as sleep } from "node:timers/promises";
import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Config } from "../config/config.ts";
import { ApiTokenSchema, AuditEntrySchema, KeyRotationState } from "../gen/conveer/v1/admin_pb.js";
import type { AuditEntry } from "../gen/conveer/v1/admin_pb.js";
import { withAdmin } from "./admin-reach.ts";
import { registerRotateMaster } from "./master-key-command.ts";
import type { AdminClient } from "./admin-reach.ts";
import { outputFormat, printMessages } from "./output.ts";
import type { OutputFormat } from "./output.ts";
import { progressBar } from "./progress.ts";

/** Parses an option that must be a whole number of at least 1. */
function positiveInt(v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError(`must be a whole number of at least 1, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Parses --since/--until: an ISO time ("2026-11-30T12:00:00Z", "2026-11-30") or an age ("90s", "15m", "2h", "7d") before now. */
export function pointInTime(v: string, now = Date.now()): Date {
  const age = /^(\d+)(s|m|h|d)$/.exec(v.trim());
  if (age) return new Date(now - Number(age[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as "s" | "m" | "h" | "d"]);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError(`must be an ISO time like 2026-11-30T12:00:00Z or an age like 15m, 2h, 7d; got ${JSON.stringify(v)}`);
  return new Date(t);
}

const iso = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "");

/** token, audit and keys: AdminService through the server, or on the store directly when no server answers (admin-reach.ts). */
export function registerAdminCommands(program: Command, getConfig: () => Config): void {
  registerTokenCommands(program, getConfig);
  const keys = program.command("keys").description("data keys of the credential vault, and the master key that wraps them");
  keys
    .command("rotate")
    .description("make a new data key active and re-encrypt every secret under it, in batches, in the background of the server (shows its progress; exits 1 if it fails)")
    .option("--batch <n>", "rows per transaction (1-10000)", positiveInt, 500)
    .action((o: { batch: number }) => withAdmin(getConfig(), (admin) => rotateKeys(admin, o.batch), { vault: true }));
  registerRotateMaster(keys, getConfig);
  program
    .command("audit")
    .description("the audit log, newest first: every secret read and every write (see README, What the audit log records)")
    .option("--actor <name>", "only what this token (or system principal) did")
    .option("--action <name>", 'only this action (e.g. account.status), or a prefix ending in "." (e.g. account.)')
    .option("--account <id>", "only this account")
    .option("--since <time>", "from this time on (ISO time, or an age: 15m, 2h, 7d)", (v) => pointInTime(v))
    .option("--until <time>", "before this time (ISO time, or an age)", (v) => pointInTime(v))
    .option("--limit <n>", "at most this many entries", positiveInt, 100)
    .option("--output <format>", "table, json (one object per line) or csv", outputFormat, "table")
    .action(async (o: { actor?: string; action?: string; account?: string; since?: Date; until?: Date; limit: number; output: OutputFormat }) => {
      const entries = await withAdmin(getConfig(), (admin) => auditEntries(admin, o));
      printMessages(o.output, AuditEntrySchema, entries, [
        ["TIME", (e) => iso(e.at)],
        ["ACTOR", (e) => e.actor],
        ["ACTION", (e) => e.action],
        ["ACCOUNT", (e) => e.accountId],
        ["TARGET", (e) => e.target],
        ["DETAIL", (e) => e.detail],
        ["PEER", (e) => e.peer],
      ]);
    });
}

function registerTokenCommands(program: Command, getConfig: () => Config): void {
  const token = program.command("token").description("API tokens (stored only as hashes)");
  token
    .command("create")
    .description("create a token; its secret is printed once")
    .requiredOption("--name <name>", "a unique name, recorded in the audit log and status history")
    .requiredOption("--scopes <scopes>", "comma-separated, e.g. 'accounts:read,proxies:write', 'admin' or '*'")
    .action(async (o: { name: string; scopes: string }) => {
      const scopes = o.scopes.split(",").map((s) => s.trim()).filter(Boolean);
      const { secret } = await withAdmin(getConfig(), (admin) => admin.createToken({ name: o.name, scopes }));
      process.stdout.write(`${secret}\n`);
      process.stderr.write(`token ${JSON.stringify(o.name)} created; this is the only time its secret is shown. Send it as "authorization: Bearer <token>" (the CLI reads CONVEER_TOKEN).\n`);
    });
  token
    .command("list")
    .description("list tokens (names and scopes, never secrets)")
    .option("--output <format>", "table, json (one object per line) or csv", outputFormat, "table")
    .action(async (o: { output: OutputFormat }) => {
      const { tokens } = await withAdmin(getConfig(), (admin) => admin.listTokens({}));
      printMessages(o.output, ApiTokenSchema, tokens, [
        ["NAME", (t) => t.name],
        ["SCOPES", (t) => t.scopes.join(",")],
        ["CREATED", (t) => iso(t.createdAt)],
        ["STATE", (t) => (t.revokedAt ? `revoked ${iso(t.revokedAt)}` : "active")],
      ]);
    });
  token
    .command("revoke <name>")
    .description("revoke a token (takes effect within 5 s on every replica)")
    .action(async (name: string) => {
      const { revoked } = await withAdmin(getConfig(), (admin) => admin.revokeToken({ name }));
      if (!revoked) throw new Error(`no active token named ${JSON.stringify(name)}`);
      process.stdout.write(`revoked ${name}\n`);
    });
}

/** Starts a rotation and follows it to its end with a progress bar; throws when it failed. */
async function rotateKeys(admin: AdminClient, batchSize: number): Promise<void> {
  let r = await admin.startKeyRotation({ batchSize });
  const total = Number(r.total);
  const bar = progressBar(`re-encrypting (rotation ${r.id})`, total);
  while (r.state === KeyRotationState.RUNNING) {
    bar.update(Math.min(total, Number(r.done)));
    await sleep(250);
    r = await admin.getKeyRotation({ rotationId: r.id });
  }
  bar.update(Math.min(total, Number(r.done)));
  bar.stop();
  if (r.state !== KeyRotationState.SUCCEEDED) throw new Error(`key rotation ${r.id} failed: ${r.error || "no reason recorded"}`);
  process.stdout.write(`data key ${r.keyId} is active; ${r.done} values re-encrypted\n`);
}

/** Pages through ListAuditEntries until `limit` entries or the end. */
async function auditEntries(admin: AdminClient, o: { actor?: string; action?: string; account?: string; since?: Date; until?: Date; limit: number }): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let pageToken = "";
  do {
    const page = await admin.listAuditEntries({
      actor: o.actor ?? "",
      action: o.action ?? "",
      accountId: o.account ?? "",
      after: o.since ? timestampFromDate(o.since) : undefined,
      before: o.until ? timestampFromDate(o.until) : undefined,
      pageSize: Math.min(1000, o.limit - out.length),
      pageToken,
    });
    out.push(...page.entries);
    pageToken = page.nextPageToken;
  } while (pageToken && out.length < o.limit);
  return out;
}
