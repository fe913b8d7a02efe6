import { setTimeout as sleep } from "node:timers/promises";
import type { Actor } from "../audit/audit-log.ts";
import { recordAudit } from "../audit/audit-log.ts";
import { AppError, invalidArgument, notFound } from "../errors.ts";
import { checkId } from "../store/ids.ts";
import { PgError, sqlState } from "../store/pg-errors.ts";
import { reencryptAll, remainingBefore, remainingUnder } from "../vault/vault.ts";
import type { AdminContext } from "./admin-context.ts";
import * as store from "./rotation-store.ts";
import type { RotationRow } from "./rotation-store.ts";

/**
 * Key rotation as the server runs it: StartKeyRotation makes a new data key active and records a
 * RUNNING rotation (with its audit entry) in one transaction, then re-encrypts in the background
 * of that process, writing done/total and a heartbeat to the row, so GetKeyRotation answers from
 * any replica. A rotation whose process died stops heartbeating; after the lease, the next
 * GetKeyRotation or StartKeyRotation marks it FAILED, and a new rotation (a newer key) re-encrypts
 * everything still under an older key, the dead one's leftovers included. A process that stops
 * cleanly ends its rotation between two batches, FAILED with the reason.
 */

/** How many sweeps a rotation makes for stragglers (values other replicas sealed under the old key before they heard of the new one). */
const SWEEPS = 20;

/** The reason a rotation's signal is aborted with when its process stops. */
export const SHUTTING_DOWN = new Error("interrupted: the process running it is stopping; start a new rotation to finish the sweep");

/** Starts a rotation (FAILED_PRECONDITION naming the running one, if any) and runs it in the background; answers the new row. */
export async function startKeyRotation(ctx: AdminContext, batchSize: number, who: Actor): Promise<RotationRow> {
  const batch = batchSize === 0 ? 500 : batchSize;
  if (!Number.isInteger(batch) || batch < 1 || batch > 10_000) throw invalidArgument("batch_size", `must be between 1 and 10000, got ${batchSize}`);
  await store.failStale(ctx.db, ctx.rotationLeaseMs);
  const id = ctx.newId();
  const keyId = ctx.newId();
  let row: RotationRow | undefined;
  try {
    // The data_keys lock taken by activateNewKey serializes concurrent starts (any replica), so the check below is not racy.
    await ctx.vault.activateNewKey(keyId, async (tx) => {
      const running = await store.runningRotation(tx, true);
      if (running) throw alreadyRunning(running);
      const total = await remainingUnder(tx, keyId);
      row = await store.insertRotation(tx, { id, keyId, total, batchSize: batch, startedBy: who.name });
      await recordAudit(tx, who, { action: "keys.rotate", target: keyId, detail: `rotation ${id}: ${total} sealed values to re-encrypt, in batches of ${batch}` });
    });
  } catch (err) {
    if (sqlState(err) !== PgError.uniqueViolation) throw err;
    const running = await store.runningRotation(ctx.db);
    throw running ? alreadyRunning(running) : err;
  }
  if (ctx.vault.activeKeyId() !== keyId) throw new AppError("INTERNAL", `data key ${keyId} was made active but the vault reports ${ctx.vault.activeKeyId()}`);
  ctx.rotations.run(row!.id, (signal) => runRotation(ctx, row!, signal));
  return row!;
}

function alreadyRunning(r: RotationRow): AppError {
  return new AppError(
    "FAILED_PRECONDITION",
    `key rotation ${r.id} (started by ${r.started_by} at ${r.started_at.toISOString()}, ${r.done}/${r.total} done) is still running; wait for it to end (GetKeyRotation)`,
  );
}

/** A rotation's state, failing it first when its process died (heartbeat older than the lease); NOT_FOUND when none. */
export async function getKeyRotation(ctx: AdminContext, id: string): Promise<{ row: RotationRow; remaining: number }> {
  if (id) checkId(id, "rotation_id");
  await store.failStale(ctx.db, ctx.rotationLeaseMs);
  const row = await store.getRotation(ctx.db, id);
  if (!row) throw id ? notFound("key rotation", id) : new AppError("NOT_FOUND", "no key rotation was ever started; start one with StartKeyRotation (`conveer keys rotate`)");
  // The active key's rotation: everything not under it; a superseded one: what is still under the keys it replaced.
  const remaining = ctx.vault.activeKeyId() === row.key_id ? await remainingUnder(ctx.db, row.key_id) : await remainingBefore(ctx.db, row.key_id);
  return { row, remaining };
}

/** Re-encrypts until nothing is under an older key, heartbeating; ends the row SUCCEEDED or FAILED. */
async function runRotation(ctx: AdminContext, row: RotationRow, signal: AbortSignal): Promise<void> {
  let done = 0;
  let fenced = false;
  const heartbeat = setInterval(() => {
    store.recordProgress(ctx.db, row.id, undefined).then(
      (ok) => void (fenced ||= !ok),
      (err) => ctx.log.warn({ err: String(err), rotation: row.id }, "key rotation heartbeat failed"),
    );
  }, ctx.rotationHeartbeatMs);
  const progress = async (n: number) => {
    if (fenced || !(await store.recordProgress(ctx.db, row.id, n))) throw new Error("this rotation was marked FAILED meanwhile (its heartbeat lapsed); stopping");
  };
  try {
    for (let pass = 0; pass < SWEEPS; pass++) {
      const before = done;
      done += await reencryptAll(ctx.db, ctx.vault, { batchSize: row.batch_size, signal, onProgress: (d) => progress(before + d) });
      if ((await remainingUnder(ctx.db, row.key_id)) === 0) break;
      await sleep(500, undefined, { signal });
    }
    const left = await remainingUnder(ctx.db, row.key_id);
    if (left > 0) throw new Error(`${left} values are still under older keys after ${SWEEPS} sweeps; start a new rotation`);
    await store.finishRotation(ctx.db, row.id, "SUCCEEDED", done);
    ctx.log.info({ rotation: row.id, key: row.key_id, done }, "key rotation succeeded");
  } catch (err) {
    const why = signal.aborted ? SHUTTING_DOWN.message : (err as Error).message;
    ctx.log.warn({ rotation: row.id, err: String(err) }, "key rotation failed");
    await store.finishRotation(ctx.db, row.id, "FAILED", done, why).catch((e) => ctx.log.error({ err: String(e), rotation: row.id }, "could not record the failed key rotation"));
  } finally {
    clearInterval(heartbeat);
  }
}
