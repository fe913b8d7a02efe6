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
 * Soft delete: lets go of what the other services hold for the account (its warming task is
 * stopped, its proxy released, a pending activation cancelled), then moves it to DELETED with
 * the reason, history and an audit record in one transaction. The side effects come first so a
 * failed one leaves the account as it was and the call can be retried; each of them is idempotent.
 * An account already DELETED is answered as it is, nothing changed.
 */
export async function deleteAccount(ctx: AccountsContext, id: string, reason: string, who: Deleter): Promise<DeleteAccountResponse> {
  checkId(id, "account_id");
  if (reason.length > 1000) throw invalidArgument("reason", `must be at most 1000 characters, got ${reason.length}`);
  const before = await store.getPublicAccount(ctx.db, id);
  if (!before) throw notFound("account", id);
  if (before.status === AccountStatus.DELETED) return create(DeleteAccountResponseSchema, { account: toAccount(before), deleted: false });
  assertTransition(before.status, AccountStatus.DELETED);
  const done = await letGo(ctx, id, reason || "deleted", who);
  return ctx.db.transaction(async (tx) => {
    const row = await store.lockAccount(tx, id);
    if (!row) throw notFound("account", id);
    // Deleted by a concurrent call meanwhile: that call recorded it.
    if (row.status === AccountStatus.DELETED) return create(DeleteAccountResponseSchema, { account: toAccount(row), deleted: false, ...done });
    assertTransition(row.status, AccountStatus.DELETED);
    await store.setStatus(tx, id, row.status, AccountStatus.DELETED, reason || "deleted", who.name);
    await recordAudit(tx, who, { action: "account.delete", accountId: id, detail: reason });
    const after = await store.getPublicAccount(tx, id);
    return create(DeleteAccountResponseSchema, { account: toAccount(after!), deleted: true, ...done });
  });
}

/** Stops, releases and cancels what the account holds, through the owning services. */
async function letGo(ctx: AccountsContext, id: string, reason: string, who: Deleter) {
  const held = await store.accountHoldings(ctx.db, id);
  const done = { stoppedWarmingTaskId: "", releasedProxyId: "", cancelledActivationId: "" };
  const peers = ctx.peers;
  if (held.task_id) {
    const task = await peerCall("warming", () => peers.warming().stopWarming({ taskId: held.task_id, reason: `account deleted by ${who.name}: ${reason}`.slice(0, 1000) }), ["FAILED_PRECONDITION", "NOT_FOUND"]);
    if (task) done.stoppedWarmingTaskId = held.task_id;
  }
  if (held.proxy_id) {
    const r = await peerCall("proxy", () => peers.proxies().releaseProxy({ accountId: id }), []);
    if (r?.success) done.releasedProxyId = r.proxyId;
  }
  if (held.activation_id) {
    const r = await peerCall("sms", () => peers.sms().cancelActivation({ activationId: held.activation_id }), ["FAILED_PRECONDITION", "NOT_FOUND"]);
    if (r?.success) done.cancelledActivationId = held.activation_id;
  }
  return done;
}

/** One peer call; `settled` codes mean the thing already ended (answered undefined); other errors stop the delete. */
async function peerCall<T>(service: string, call: () => Promise<T>, settled: string[]): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    const code = codeOf(err);
    if (settled.includes(code)) return undefined;
    throw new AppError("UNAVAILABLE", `cannot delete the account yet: the ${service} service answered ${messageOf(err)}; nothing was changed, retry later`);
  }
}
