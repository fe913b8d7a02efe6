import type { Logger } from "pino";
import type { WarmingEvent } from "../gen/conveer/v1/warming_pb.js";
import type { Db } from "../store/db.ts";
import type { Clock } from "./clock.ts";
import type { EventHub, EventHubOptions } from "./events.ts";
import type { WarmingPeers } from "./peers.ts";
import type { Scenario } from "./scenario.ts";
import type { EventRow } from "./warming-store.ts";
import { WORKER_DEFAULTS } from "./worker.ts";
import type { Worker, WorkerOptions } from "./worker.ts";

/** Settings; every field has a default. */
export type WarmingOptions = Partial<WorkerOptions> & {
  /** Run the worker loop in this process (default true); false serves the API only. */
  runWorker?: boolean;
  /** The event hub's settings. */
  events?: EventHubOptions;
  /** A task left PENDING this long (real ms) had its StartWarming interrupted; upkeep settles it. Default 60 s. */
  startRecoveryMs?: number;
  /** An ended task whose account release failed is retried after this long (real ms). Default 30 s. */
  releaseRetryMs?: number;
  /** Events are deleted this long (real ms) after they were written; 0 keeps them forever. Default 30 days. */
  eventRetentionMs?: number;
};

/** WarmingOptions with every default applied (resolveOptions). */
export type ResolvedOptions = {
  worker: WorkerOptions;
  runWorker: boolean;
  events: EventHubOptions | undefined;
  startRecoveryMs: number;
  releaseRetryMs: number;
  eventRetentionMs: number;
};

/** Dependencies of the warming domain. */
export type WarmingDeps = {
  db: Db;
  peers: WarmingPeers;
  clock: Clock;
  newId: () => string;
  log: Logger;
  /** Scenarios by id (builtinScenarios() or loadScenarios(CONVEER_SCENARIOS_DIR)). */
  scenarios: ReadonlyMap<string, Scenario>;
  options?: WarmingOptions;
  /** Counts the worker's actions and their lag (conveer_warming_actions_total, conveer_warming_lag_seconds); none: not counted. */
  metrics?: WarmingMetrics;
};

/** What the warming worker reports. */
export type WarmingMetrics = {
  /** A platform call ended: outcome done, failed, transient (retried unless the task hit its failure limit), fatal or interrupted. */
  warmingActionEnded(platform: string, type: string, outcome: string): void;
  /** An action was claimed lagSeconds (scenario time) after it fell due. */
  warmingActionStarted(lagSeconds: number): void;
};

/** What every part of the warming domain works with, built once by createWarming. */
export type WarmingContext = Omit<WarmingDeps, "options"> & {
  opts: ResolvedOptions;
  hub: EventHub;
  worker: Worker;
  /** Ended tasks whose account release runs now (one at a time per task; stop waits for them). */
  releasing: Set<string>;
  /** One frozen message per event row (see messages.ts toEvent). */
  eventMessages: WeakMap<EventRow, WarmingEvent>;
};

/** Real ms in a day. */
export const DAY_MS = 86_400_000;

/** Applies the defaults, once. A worker option that is not a finite number keeps its default. */
export function resolveOptions(o: WarmingOptions = {}): ResolvedOptions {
  const worker: WorkerOptions = { ...WORKER_DEFAULTS };
  for (const k of Object.keys(WORKER_DEFAULTS) as (keyof WorkerOptions)[]) {
    const v = o[k];
    if (typeof v === "number" && Number.isFinite(v)) worker[k] = v;
  }
  return {
    worker,
    runWorker: o.runWorker ?? true,
    events: o.events,
    startRecoveryMs: o.startRecoveryMs ?? 60_000,
    releaseRetryMs: o.releaseRetryMs ?? 30_000,
    eventRetentionMs: o.eventRetentionMs ?? 30 * DAY_MS,
  };
}
