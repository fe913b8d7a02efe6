/**
 * Time for warming. Scenarios span days; the scheduler asks a Clock for "now" and sleeps on it, so
 * tests drive it with fakeClock and demos compress it with systemClock(CONVEER_TIME_SCALE).
 */

/** Scenario time: `now()` in epoch ms, and `sleep` for a span of scenario time (rejects with signal.reason on abort). */
export type Clock = { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> };

/** A clock tests move by hand. */
export type FakeClock = Clock & {
  /** Moves time forward by ms, waking sleepers in due order and letting each run before the next (await it). */
  advance(ms: number): Promise<void>;
  /** How many sleeps are waiting. */
  pending(): number;
};

// setTimeout's longest delay; longer ones fire at once, so sleeps are chunked.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Where a scaled clock is pinned: at real time realAt (epoch ms), scenario time was scenarioAt. */
export type ClockAnchor = { realAt: number; scenarioAt: number };

/**
 * The real clock, optionally sped up: scenario time = anchor.scenarioAt + (real now − anchor.realAt)
 * × timeScale, so 1440 makes a scenario day pass per real minute. The anchor defaults to this
 * moment; a system keeps one in the store (clock-anchor.ts) so that scaled time goes on across
 * restarts and replicas. `sleep(ms)` waits ms of scenario time (ms / timeScale real). `realNow`
 * is where real time comes from (anchoredClock passes the database's, corrected for this host).
 */
export function systemClock(timeScale = 1, anchor?: ClockAnchor, realNow: () => number = Date.now): Clock {
  if (!Number.isFinite(timeScale) || timeScale <= 0) throw new RangeError(`timeScale must be a positive number, got ${timeScale}`);
  const { realAt, scenarioAt } = anchor ?? { realAt: realNow(), scenarioAt: realNow() };
  const now = timeScale === 1 && realAt === scenarioAt ? realNow : () => scenarioAt + (realNow() - realAt) * timeScale;
  return {
    now,
    sleep(ms, signal) {
      const until = now() + Math.max(0, ms);
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        let timer: NodeJS.Timeout | undefined;
        const onAbort = () => {
          clearTimeout(timer);
          reject(signal!.reason);
        };
        const tick = () => {
          const left = until - now();
          if (left <= 0) {
            signal?.removeEventListener("abort", onAbort);
            return resolve();
          }
          timer = setTimeout(tick, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(left / timeScale))));
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        tick();
      });
    },
  };
}

/** A clock that only moves on `advance`; starts at `start` (epoch ms or Date). */
export function fakeClock(start: number | Date = 0): FakeClock {
  let t = typeof start === "number" ? start : start.getTime();
  let nextId = 0;
  const sleepers: { id: number; at: number; resolve: () => void }[] = [];
  const flush = () => new Promise<void>((r) => setImmediate(r));
  return {
    now: () => t,
    sleep(ms, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        if (ms <= 0) return resolve();
        const id = nextId++;
        const onAbort = () => {
          const i = sleepers.findIndex((s) => s.id === id);
          if (i >= 0) sleepers.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        sleepers.push({
          id,
          at: t + ms,
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        });
      });
    },
    async advance(ms) {
      const target = t + Math.max(0, ms);
      await flush();
      for (;;) {
        let next = -1;
        for (let i = 0; i < sleepers.length; i++) {
          if (sleepers[i].at <= target && (next < 0 || sleepers[i].at < sleepers[next].at || (sleepers[i].at === sleepers[next].at && sleepers[i].id < sleepers[next].id))) next = i;
        }
        if (next < 0) break;
        const [s] = sleepers.splice(next, 1);
        t = Math.max(t, s.at);
        s.resolve();
        await flush();
      }
      t = target;
    },
    pending: () => sleepers.length,
  };
}
