import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ApiToken, AuditEntry, KeyRotation, ListAuditEntriesRequest } from "../gen/conveer/v1/admin_pb.js";
import { countAudit, listAudit, recordAudit } from "../audit/audit-log.ts";
import type { Actor, AuditFilter } from "../audit/audit-log.ts";
import { createToken, listTokens, revokeToken } from "../auth/tokens.ts";
import { AppError, invalidArgument, quote } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import type { StoreDump } from "../store/db.ts";
import { checkId } from "../store/ids.ts";
import { adminContext } from "./admin-context.ts";
import type { AdminContext, AdminDeps } from "./admin-context.ts";
import { toApiToken, toAuditEntry, toKeyRotation } from "./admin-messages.ts";
import { getKeyRotation, startKeyRotation } from "./key-rotation.ts";

export type { AdminDeps } from "./admin-context.ts";

/**
 * The admin domain, transport-free: API tokens (every create and revoke audited), the audit log
 * (audit-log.ts writes it; read here), and key rotation (key-rotation.ts). Served by
 * AdminService on the HTTP port, and used directly by the CLI when no server answers.
 */
export function createAdmin(deps: AdminDeps) {
  const ctx = adminContext(deps);
  return {
    /** Whether anonymous calls are let in now. */
    isOpen: async () => (ctx.auth ? ctx.auth.isOpen() : false),
    /** Creates a token (audited); answers it and its secret, shown this once. */
    createToken: (name: string, scopes: string[], who: Actor) => newToken(ctx, name, scopes, who),
    /** Every token, oldest first, never a secret. */
    listTokens: async (): Promise<ApiToken[]> => (await listTokens(ctx.db)).map(toApiToken),
    /** Revokes a token by name (audited); false when no active token had that name. */
    revokeToken: (name: string, who: Actor) => revoke(ctx, name, who),
    /** A page of the audit log, newest first, with the total for the filter. */
    listAudit: (req: ListAuditEntriesRequest) => listAuditEntries(ctx, req),
    /** Starts a key rotation that runs in the background of this process. */
    startKeyRotation: async (batchSize: number, who: Actor): Promise<KeyRotation> => {
      const row = await startKeyRotation(ctx, batchSize, who);
      return toKeyRotation(row, Number(row.total));
    },
    /** A rotation's progress ("" for the newest), from the store. */
    getKeyRotation: async (id: string): Promise<KeyRotation> => {
      const { row, remaining } = await getKeyRotation(ctx, id);
      return toKeyRotation(row, remaining);
    },
    /** A consistent dump of the embedded store while it serves (audited); FAILED_PRECONDITION on PostgreSQL. */
    backupStore: (who: Actor) => backupStore(ctx, who),
    /** Stops this process's rotation between two batches (it ends FAILED, saying why) and waits for it. */
    stop: () => ctx.rotations.stop(),
  };
}

/** The admin domain's API. */
export type Admin = ReturnType<typeof createAdmin>;

async function backupStore(ctx: AdminContext, who: Actor): Promise<StoreDump> {
  if (!ctx.db.dumpEmbedded) {
    throw new AppError("FAILED_PRECONDITION", "the store is PostgreSQL (DATABASE_URL): back it up with pg_dump (e.g. pg_dump -Fc -f conveer.dump \"$DATABASE_URL\")", { reason: "NOT_EMBEDDED" });
  }
  const t0 = performance.now();
  const dumped = await ctx.db.dumpEmbedded();
  const ms = Math.round(performance.now() - t0);
  await recordAudit(ctx.db, who, { action: "store.backup", target: "embedded store", detail: `${dumped.dump.length} bytes in ${ms} ms` });
  ctx.log.info({ bytes: dumped.dump.length, ms }, "store dumped for a backup while serving (the process paused while PGlite wrote the tar)");
  return dumped;
}

async function newToken(ctx: AdminContext, name: string, scopes: string[], who: Actor): Promise<{ token: ApiToken; secret: string }> {
  const made = await ctx.db.transaction(async (tx) => {
    const secret = await createToken(tx, ctx.newId(), name, scopes);
    await recordAudit(tx, who, { action: "token.create", target: name, detail: `scopes: ${scopes.join(",")}` });
    const [row] = await listTokens(tx, name);
    return { token: toApiToken(row), secret };
  });
  // An automatic open mode ends with the first token: at once here, within the auth cache on other replicas.
  ctx.auth?.tokenCreated?.();
  return made;
}

async function revoke(ctx: AdminContext, name: string, who: Actor): Promise<boolean> {
  if (!name) throw invalidArgument("name", "is required: the name of the token to revoke");
  return ctx.db.transaction(async (tx) => {
    const revoked = await revokeToken(tx, name);
    if (revoked) await recordAudit(tx, who, { action: "token.revoke", target: name });
    return revoked;
  });
}

/** ListAuditEntries: validates the filter, pages newest first by id. */
async function listAuditEntries(ctx: AdminContext, req: ListAuditEntriesRequest): Promise<{ entries: AuditEntry[]; next: string; total: number }> {
  if (req.accountId) checkId(req.accountId, "account_id");
  if (req.action.length > 100) throw invalidArgument("action", `must be at most 100 characters, got ${req.action.length}`);
  if (req.action && !/^[a-z_.]+$/.test(req.action)) throw invalidArgument("action", `must be a dotted name such as "account.status", or a prefix ending in "." such as "account.", got ${quote(req.action)}`);
  const filter: AuditFilter = {
    actor: req.actor,
    action: req.action,
    accountId: req.accountId,
    after: req.after ? timestampDate(req.after) : undefined,
    before: req.before ? timestampDate(req.before) : undefined,
  };
  if (filter.after && filter.before && filter.after >= filter.before) throw invalidArgument("before", "must be later than after");
  const limit = pageSize(req.pageSize);
  const fingerprint = { ...filter, after: filter.after?.toISOString() ?? "", before: filter.before?.toISOString() ?? "" };
  const beforeId = decodePageToken(req.pageToken, fingerprint);
  if (beforeId && !/^\d+$/.test(beforeId)) throw invalidArgument("page_token", "is not a token this listing returned");
  const [rows, total] = await Promise.all([listAudit(ctx.db, filter, beforeId, limit + 1), countAudit(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, fingerprint) : "";
  return { entries: page.map(toAuditEntry), next, total };
}
