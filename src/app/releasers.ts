import type { Logger } from "pino";

/**
 * Every resource a running system holds, in the order stop() releases them. Written down here,
 * not implied by the order things were started in:
 * - the HTTP port and the timers that use the store and peers on their own go first, then a key
 *   rotation running here (it stops between two batches and records why);
 * - then background work that holds calls open (warming's in-flight actions, SMS GetCode waiters),
 *   so those calls end at once ("call again") instead of holding the drain for its whole grace;
 * - then the gRPC ports drain (in-flight calls get up to the grace period);
 * - then what the calls used (registration recovery, the SMS provider, the sandbox, the vault);
 * - the store last.
 */
export const SHUTDOWN_ORDER = [
  "http",
  "proxy-health-checks",
  "store-probe",
  "key-rotation",
  "warming",
  "sms",
  "grpc",
  "registration-recovery",
  "sms-provider",
  "sandbox",
  "vault",
  "store",
] as const;

/** One resource's slot in SHUTDOWN_ORDER. */
export type Resource = (typeof SHUTDOWN_ORDER)[number];

/** Frees one resource; graceMs is how long stop() lets in-flight work finish. */
export type Releaser = (graceMs: number) => Promise<void>;

/**
 * What every mount registers its release with (graphile-worker's `withReleasers`, but ordered by
 * SHUTDOWN_ORDER rather than by registration). `release` runs them once, logging failures and
 * going on; a second call answers the first call's promise.
 */
export type Releasers = {
  add(resource: Resource, fn: Releaser): void;
  release(graceMs: number): Promise<void>;
};

/** An empty set of releasers. */
export function createReleasers(log: Logger): Releasers {
  const registered = new Map<Resource, Releaser>();
  let releasing: Promise<void> | undefined;
  const releaseAll = async (graceMs: number) => {
    for (const resource of SHUTDOWN_ORDER) {
      const fn = registered.get(resource);
      if (fn) await fn(graceMs).catch((err) => log.warn({ err: String(err) }, "error while stopping"));
    }
  };
  return {
    add(resource, fn) {
      if (registered.has(resource)) throw new Error(`${resource} was registered twice for release`);
      registered.set(resource, fn);
    },
    release: (graceMs) => (releasing ??= releaseAll(graceMs)),
  };
}
