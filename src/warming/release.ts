import { setTimeout as sleep } from "node:timers/promises";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { codeOf, messageOf } from "../errors.ts";
import { abandoned, INTERRUPTED_START, recovered, statusName } from "./task-status.ts";
import { transition } from "./tasks.ts";
import type { WarmingContext } from "./warming-context.ts";
import { DAY_MS } from "./warming-context.ts";
import * as store from "./warming-store.ts";
import type { EndedTask } from "./warming-store.ts";

/**
 * Account release and the upkeep. When a task ends its account goes back to ACTIVE if it is still
 * WARMING, through an outbox (`account_released`) retried until AccountService accepts; the upkeep
 * retries those, settles interrupted starts and deletes events past their retention.
 */

const EVENT_PRUNE_BATCH = 5000;

/**
 * The one log line of a task that ended: COMPLETED (info), STOPPED (info, with the reason given)
 * or FAILED (warn, with the reason). Written after the change committed, by the process that made it.
 */
export function logTaskEnded(ctx: Pick<WarmingContext, "log">, t: EndedTask, reason = t.error): void {
  const status = statusName(t.status).replace("WARMING_STATUS_", "");
  const line = { task_id: t.id, account_id: t.account_id, platform: t.platform, status, actions_completed: t.actions_completed, actions_failed: t.actions_failed };
  if (status === "FAILED") ctx.log.warn({ ...line, reason }, "warming task ended");
  else ctx.log.info(status === "STOPPED" ? { ...line, reason } : line, "warming task ended");
}

/** Peer calls of a release in flight at once. */
const RELEASE_CALLS = 32;

/**
 * Moves the accounts of ended tasks back from WARMING (only those still WARMING, and not owned by
 * a newer task), then marks the tasks released, all that succeeded in one statement: a batch of
 * tasks that ended together costs the store two statements, not two per task. A release that
 * fails is retried by the upkeep.
 */
export async function release(ctx: WarmingContext, ended: readonly EndedTask[]): Promise<void> {
  const { db, log, releasing } = ctx;
  const ts = ended.filter((t) => !releasing.has(t.id));
  if (ts.length === 0) return;
  for (const t of ts) releasing.add(t.id);
  try {
    // A newer task owns the WARMING status (cannot happen while this one is unreleased; cheap to check).
    const owned = await store.accountsWithOpenTasks(db, ts.map((t) => t.account_id)).catch(() => undefined);
    if (!owned) return log.warn({ tasks: ts.length }, "could not move accounts back from WARMING; retrying later");
    const done: string[] = [];
    for (let i = 0; i < ts.length; i += RELEASE_CALLS) {
      await Promise.all(
        ts.slice(i, i + RELEASE_CALLS).map(async (t) => {
          try {
            await releaseAccount(ctx, t, owned.has(t.account_id));
            done.push(t.id);
          } catch (err) {
            log.warn({ task_id: t.id, account_id: t.account_id, err: messageOf(err) }, "could not move the account back from WARMING; retrying later");
          }
        }),
      );
    }
    await store.markReleased(db, done).catch((err) => log.warn({ tasks: done.length, err: messageOf(err) }, "could not mark accounts released; retrying later"));
  } finally {
    for (const t of ts) releasing.delete(t.id);
  }
}

/** The peer side of a release: the account back to ACTIVE when it is still WARMING and no open task owns it. */
async function releaseAccount(ctx: WarmingContext, t: EndedTask, owned: boolean): Promise<void> {
  if (owned) return;
  const { peers } = ctx;
  try {
    const acc = await peers.accounts.getAccount({ accountId: t.account_id });
    if (acc.status !== AccountStatus.WARMING) return;
    await peers.accounts.updateStatus({ accountId: t.account_id, status: AccountStatus.ACTIVE, reason: `warming task ${t.id} ${statusName(t.status).replace("WARMING_STATUS_", "").toLowerCase()}`.slice(0, 1000) });
  } catch (err) {
    if (codeOf(err) !== "NOT_FOUND") throw err;
  }
}

/** Gives the releases in flight up to graceMs (at least a second); one that cannot finish is retried by the next process's upkeep. */
export async function releasesSettled(ctx: WarmingContext, graceMs: number): Promise<void> {
  const until = Date.now() + Math.max(graceMs, 1000);
  while (ctx.releasing.size > 0 && Date.now() < until) await sleep(5);
}

/**
 * Deletes events past their retention, up to 20 batches a round (a backlog continues next
 * round). A round with nothing to delete reads the 5,000 lowest ids of the primary key: cheap.
 */
async function pruneEvents(ctx: WarmingContext): Promise<void> {
  const { eventRetentionMs } = ctx.opts;
  if (eventRetentionMs <= 0) return;
  let n = 0;
  let gone = EVENT_PRUNE_BATCH;
  for (let round = 0; round < 20 && gone === EVENT_PRUNE_BATCH; round++) {
    gone = await store.deleteOldEvents(ctx.db, eventRetentionMs, EVENT_PRUNE_BATCH);
    n += gone;
  }
  if (n > 0) ctx.log.info({ events: n, retention_days: eventRetentionMs / DAY_MS }, "deleted warming events past their retention");
}

/** Settles StartWarming calls interrupted before the task became RUNNING: RUNNING if the account became WARMING, else FAILED. */
async function settleStarts(ctx: WarmingContext): Promise<void> {
  for (const t of await store.claimStalePending(ctx.db, ctx.opts.startRecoveryMs, 100)) {
    let status: AccountStatus | undefined;
    try {
      status = (await ctx.peers.accounts.getAccount({ accountId: t.account_id })).status;
    } catch (err) {
      if (codeOf(err) !== "NOT_FOUND") {
        ctx.log.warn({ task_id: t.id, err: messageOf(err) }, "cannot settle an interrupted start yet");
        continue;
      }
    }
    if (status === AccountStatus.WARMING) await transition(ctx, t.id, "recovered an interrupted start", "system", (row) => recovered(row, ctx.clock.now()));
    else await transition(ctx, t.id, INTERRUPTED_START, "system", (row) => abandoned(row, ctx.clock.now()));
  }
}

/** The domain's upkeep: releases that failed, StartWarming calls interrupted before the account became WARMING, old events. */
export async function upkeep(ctx: WarmingContext): Promise<void> {
  await pruneEvents(ctx);
  await release(ctx, await store.claimUnreleased(ctx.db, ctx.opts.releaseRetryMs, 100));
  await settleStarts(ctx);
}

/**
 * The one upkeep timer, every maintenanceMs: the worker's part (lapsed leases, stranded tasks)
 * where the worker runs here, then the domain's; a process without a worker
 * (CONVEER_WARMING_WORKER=0) runs the domain's alone. One round at a time.
 */
export function createUpkeep(ctx: WarmingContext) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  /** One round now (or the one in progress); `withWorker` adds the worker's part. */
  function round(withWorker: boolean): Promise<void> {
    if (stopped) return Promise.resolve();
    running ??= (async () => {
      try {
        if (withWorker) await ctx.worker.upkeep();
        await upkeep(ctx);
      } catch (err) {
        if (!stopped) ctx.log.warn({ err: String(err) }, "warming upkeep failed; retrying next round");
      }
    })().finally(() => {
      running = undefined;
    });
    return running;
  }

  return {
    round,
    /** Starts the timer; with a worker here, runs a first round at once. */
    start(): void {
      stopped = false;
      const { runWorker, worker } = ctx.opts;
      timer = setInterval(() => void round(runWorker), worker.maintenanceMs);
      timer.unref();
      if (runWorker) void round(true);
    },
    /** Stops the timer and waits for the round in progress. */
    async stop(): Promise<void> {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

/** The upkeep timer's API. */
export type Upkeep = ReturnType<typeof createUpkeep>;
