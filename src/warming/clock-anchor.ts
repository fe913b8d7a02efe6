import type { Logger } from "pino";
import type { Db } from "../store/db.ts";
import { systemClock } from "./clock.ts";
import type { Clock } from "./clock.ts";
import * as store from "./warming-store.ts";

/**
 * Below this, a difference between this host's clock and the database's is left alone: it is
 * within what one round trip can measure (and CONVEER_TIME_SCALE would multiply that noise);
 * above it, warming follows the database's clock and the start says so.
 */
const SKEW_IGNORED_MS = 500;

/**
 * The system's scenario clock, anchored in the store so that scaled time (CONVEER_TIME_SCALE) is
 * one continuous time for every replica and across restarts. Real time is the database's clock,
 * read through this host's clock corrected by the offset measured at start (when over 0.5 s), so a
 * host whose clock is off runs actions neither early nor late (and cannot skew the anchor for the
 * others); the correction is measured once, so drift after the start is NTP's job. Real time (scale 1) with no
 * anchor yet writes nothing. A start with another scale than the stored one re-anchors at this
 * moment, keeping scenario time continuous (and logs it: replicas running with different scales
 * would disagree about the time). `localNow` is this host's clock (a seam for skew tests).
 */
export async function anchoredClock(db: Db, timeScale: number, log: Logger, localNow: () => number = Date.now): Promise<Clock> {
  const measured = await databaseOffset(db, localNow);
  const offset = Math.abs(measured) > SKEW_IGNORED_MS ? measured : 0;
  if (offset !== 0) {
    log.warn({ offset_ms: Math.round(offset) }, "this host's clock differs from the database's: warming follows the database's clock (keep hosts in sync with NTP)");
  }
  const realNow = () => localNow() + offset;
  const now = realNow();
  const anchor = await db.transaction(async (tx) => {
    if (timeScale !== 1) await store.insertClockAnchor(tx, { realAt: now, scenarioAt: now, scale: timeScale });
    const held = await store.lockClockAnchor(tx);
    if (!held || held.scale === timeScale) return held;
    const moved = { realAt: now, scenarioAt: held.scenarioAt + (now - held.realAt) * held.scale, scale: timeScale };
    await store.updateClockAnchor(tx, moved);
    log.warn({ from: held.scale, to: timeScale }, "CONVEER_TIME_SCALE changed: the scenario clock goes on from where it was at the new speed (every replica must use the same scale)");
    return moved;
  });
  return systemClock(timeScale, anchor, realNow);
}

/** How far the database's clock is ahead of `localNow` (ms), measured across one round trip. */
export async function databaseOffset(db: Db, localNow: () => number): Promise<number> {
  const before = localNow();
  const r = await db.query<{ ms: number | string }>("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms");
  const after = localNow();
  return Number(r.rows[0].ms) - (before + after) / 2;
}
