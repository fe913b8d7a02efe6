import type { Logger } from "pino";
import type { Db } from "../store/db.ts";
import { systemClock } from "./clock.ts";
import type { Clock } from "./clock.ts";
import * as store from "./warming-store.ts";

/**
 * The system's scenario clock, anchored in the store so that scaled time (CONVEER_TIME_SCALE) is
 * one continuous time for every replica and across restarts. Real time (scale 1) with no anchor
 * yet stays plain real time and writes nothing. A start with another scale than the stored one
 * re-anchors at this moment, keeping scenario time continuous (and logs it: replicas running with
 * different scales would disagree about the time).
 */
export async function anchoredClock(db: Db, timeScale: number, log: Logger): Promise<Clock> {
  const realNow = Date.now();
  const anchor = await db.transaction(async (tx) => {
    if (timeScale !== 1) await store.insertClockAnchor(tx, { realAt: realNow, scenarioAt: realNow, scale: timeScale });
    const held = await store.lockClockAnchor(tx);
    if (!held || held.scale === timeScale) return held;
    const moved = { realAt: realNow, scenarioAt: held.scenarioAt + (realNow - held.realAt) * held.scale, scale: timeScale };
    await store.updateClockAnchor(tx, moved);
    log.warn({ from: held.scale, to: timeScale }, "CONVEER_TIME_SCALE changed: the scenario clock goes on from where it was at the new speed (every replica must use the same scale)");
    return moved;
  });
  return systemClock(timeScale, anchor);
}
