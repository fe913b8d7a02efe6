import { create } from "@bufbuild/protobuf";
import { AccountStatus, DeleteAccountResponseSchema } from "../gen/conveer/v1/account_pb.js";
import type { DeleteAccountResponse } from "../gen/conveer/v1/account_pb.js";
import { AppError, codeOf, invalidArgument, messageOf, notFound } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { toAccount } from "./account-messages.ts";
import { assertTransition } from "./account-status.ts";
import * as store from "./account-store.ts";
import { recordAudit } from "../audit/audit-log.ts";
import type { AccountsContext } from "./accounts-context.ts";

/** Who asks for a delete: the token's name (history, audit) and the network peer (audit). */
export type Deleter = { name: string; peer: string };

/**
 * Soft delete: moves the account to DELETED with the reason, history and an audit record in one
 * transaction, then lets go of what the other services hold for it (its warming task is stopped,
 * its proxy released, a pending activation cancelled). Marking comes first so nothing can be
 * taken for the account meanwhile: StartWarming and AllocateProxy refuse a DELETED account (an
 * allocation whose account read came before the mark waits for it on the account row and then
 * refuses, see proxy-store allocateInOne), so what the let-go reads is all there is. If a service
 * cannot be reached the account stays DELETED and the call fails; calling it again (any account
 * already DELETED) lets go of whatever is still held, each step idempotent.
 */
export async function deleteAccount(ctx: AccountsContext, id: string, reason: string, who: Deleter): Promise<DeleteAccountResponse> {
  checkId(id, "account_id");
  if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
  const before = await store.getPublicAccount(ctx.db, id);
  if (!before) throw notFound("account", id);
  if (before.status !== AccountStatus.DELETED) assertTransition(before.status, AccountStatus.DELETED);
  const deleted = before.status !== AccountStatus.DELETED && (await mark(ctx, id, reason, who));
  const done = await letGo(ctx, id, reason || "deleted", who, deleted);
  const after = await store.getPublicAccount(ctx.db, id);
  return create(DeleteAccountResponseSchema, { account: toAccount(after!), deleted, ...done });
}

/** DELETED with the reason, history and audit, in one transaction; false when a concurrent call marked it first (that call recorded it). */
async function mark(ctx: AccountsContext, id: string, reason: string, who: Deleter): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const row = await store.lockAccount(tx, id);
    if (!row) throw notFound("account", id);
    if (row.status === AccountStatus.DELETED) return false;
    assertTransition(row.status, AccountStatus.DELETED);
    await store.setStatus(tx, id, row.status, AccountStatus.DELETED, reason || "deleted", who.name);
    await recordAudit(tx, who, { action: "account.delete", accountId: id, detail: reason });
    return true;
  });
}

/** Stops, releases and cancels what the account holds, through the owning services. */
async function letGo(ctx: AccountsContext, id: string, reason: string, who: Deleter, marked: boolean) {
  const held = await store.accountHoldings(ctx.db, id);
  const done = { stoppedWarmingTaskId: "", releasedProxyId: "", cancelledActivationId: "" };
  const peers = ctx.peers;
  if (held.task_id) {
    const task = await peerCall(id, marked, "warming", () => peers.warming().stopWarming({ taskId: held.task_id, reason: `account deleted by ${who.name}: ${reason}`.slice(0, 1000) }), ["FAILED_PRECONDITION", "NOT_FOUND"]);
    if (task) done.stoppedWarmingTaskId = held.task_id;
  }
  if (held.proxy_id) {
    const r = await peerCall(id, marked, "proxy", () => peers.proxies().releaseProxy({ accountId: id }), []);
    if (r?.success) done.releasedProxyId = r.proxyId;
  }
  if (held.activation_id) {
    const r = await peerCall(id, marked, "sms", () => peers.sms().cancelActivation({ activationId: held.activation_id }), ["FAILED_PRECONDITION", "NOT_FOUND"]);
    if (r?.success) done.cancelledActivationId = held.activation_id;
  }
  return done;
}

/** One peer call; `settled` codes mean the thing already ended (answered undefined); other errors fail the call, the account DELETED and the rest left for a retry. */
async function peerCall<T>(id: string, marked: boolean, service: string, call: () => Promise<T>, settled: string[]): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    const code = codeOf(err);
    if (settled.includes(code)) return undefined;
    const what = marked ? `account ${id} is DELETED, but` : `account ${id} was DELETED already, and`;
    throw new AppError("UNAVAILABLE", `${what} the ${service} service answered ${messageOf(err)}; call DeleteAccount again to let go of what it still holds`);
  }
}
