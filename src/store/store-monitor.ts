import type { StoreHealth } from "./db.ts";
import { storeFailureReason } from "./store-errors.ts";

/** Options of a store monitor. */
export type StoreMonitorOptions = {
  /** One sign-of-life check (e.g. `SELECT 1` on a connection of its own); aborted when it takes too long. */
  check(signal: AbortSignal): Promise<void>;
  /** How long a check may take before the store counts as down. */
  checkTimeoutMs: number;
  /** How often a down store is checked again. */
  retryMs?: number;
  /** A check failed (the full error, for the log; the state carries only a short reason). */
  onCheckFailed?(err: unknown): void;
  /** Called on every change: up → down and down → up. */
  onChange?(health: StoreHealth): void;
};

/** What the rest of the store reads and tells the monitor. */
export type StoreMonitor = {
  /** The state as last seen, without I/O. */
  health(): StoreHealth;
  /** Answers within timeoutMs: the last state when down, else a fresh check (which also updates the state). */
  ping(timeoutMs: number): Promise<StoreHealth>;
  /** Something failed the way a lost store fails (a connection error, a query timeout): check now. */
  suspect(): void;
  /** Stops re-checking. */
  stop(): void;
};

const UP: StoreHealth = Object.freeze({ ok: true });

/**
 * Keeps the store's up/down state. It runs no timer while the store is up: checks run when asked
 * (the health probe, /healthz) or when a query fails the way a lost store fails. Once down, it
 * checks again every retryMs until a check passes, so the process notices the store's return by
 * itself.
 */
export function createStoreMonitor(o: StoreMonitorOptions): StoreMonitor {
  let state: StoreHealth = UP;
  let running: Promise<StoreHealth> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  const retryMs = o.retryMs ?? 1000;

  function set(next: StoreHealth): void {
    const changed = next.ok !== state.ok;
    state = next;
    if (!changed) return;
    if (!next.ok) scheduleRetry();
    o.onChange?.(next);
  }

  function scheduleRetry(): void {
    if (stopped || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void check().then(() => {
        if (!state.ok) scheduleRetry();
      });
    }, retryMs);
    retry.unref();
  }

  function check(): Promise<StoreHealth> {
    running ??= (async () => {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), o.checkTimeoutMs);
      try {
        await Promise.race([
          o.check(ac.signal),
          new Promise<never>((_, reject) => ac.signal.addEventListener("abort", () => reject(new Error(`did not answer in ${o.checkTimeoutMs} ms`)), { once: true })),
        ]);
        set(UP);
      } catch (err) {
        o.onCheckFailed?.(err);
        set({ ok: false, reason: storeFailureReason(err) });
      } finally {
        clearTimeout(timer);
        running = undefined;
      }
      return state;
    })();
    return running;
  }

  return {
    health: () => state,
    async ping(timeoutMs) {
      return state.ok ? healthWithin(check(), timeoutMs, `the store did not answer in ${timeoutMs} ms`) : state;
    },
    suspect() {
      if (!stopped) void check();
    },
    stop() {
      stopped = true;
      clearTimeout(retry);
    },
  };
}

/** A health check's answer, or `{ ok: false, reason: late }` when it takes more than timeoutMs (the check goes on). */
export async function healthWithin(check: Promise<StoreHealth>, timeoutMs: number, late: string): Promise<StoreHealth> {
  let timer: NodeJS.Timeout | undefined;
  const tooLate = new Promise<StoreHealth>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: late }), timeoutMs);
  });
  try {
    return await Promise.race([check, tooLate]);
  } finally {
    clearTimeout(timer);
  }
}
