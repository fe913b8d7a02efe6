import { useRef, useState } from "react";
import type { WarmingEvent } from "../../../src/gen/conveer/v1/warming_pb.js";
import { WarmingStatus } from "../../../src/gen/conveer/v1/warming_pb.js";
import { useWarmingEvents } from "./events.ts";
import type { StreamState } from "./events.ts";

/** What the events told about a task since the page opened. */
export type LiveTask = { progress?: number; completed?: number; failed?: number; status?: WarmingStatus };

/**
 * Task progress as StreamEvents reports it (action_completed/failed carry progress and counts,
 * status_changed the new status), applied at most once per animation frame however many events
 * arrive, so hundreds of running tasks never queue renders.
 */
export function useLiveTasks(): { live: ReadonlyMap<string, LiveTask>; stream: StreamState; version: number; events: number } {
  const live = useRef(new Map<string, LiveTask>());
  const count = useRef(0);
  const pending = useRef(false);
  const [version, setTick] = useState(0);
  const stream = useWarmingEvents((e: WarmingEvent) => {
    const cur = live.current.get(e.taskId) ?? {};
    const d = e.data;
    const next: LiveTask = { ...cur };
    if (d.progress !== undefined) next.progress = Number(d.progress);
    if (d.actions_completed !== undefined) next.completed = Number(d.actions_completed);
    if (d.actions_failed !== undefined) next.failed = Number(d.actions_failed);
    if (e.eventType === "status_changed" && d.to) next.status = WarmingStatus[d.to.replace("WARMING_STATUS_", "") as keyof typeof WarmingStatus];
    live.current.set(e.taskId, next);
    count.current++;
    if (!pending.current) {
      pending.current = true;
      requestAnimationFrame(() => {
        pending.current = false;
        setTick((t) => t + 1);
      });
    }
  });
  return { live: live.current, stream, version, events: count.current };
}
