import { useEffect, useRef, useState } from "react";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import { WarmingService } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingEvent } from "../../../src/gen/conveer/v1/warming_pb.js";
import { describeError } from "./errors.ts";

/** The live stream's state as the page shows it. */
export type StreamState = { state: "connecting" | "live" | "retrying"; error?: string };

/**
 * Follows WarmingService.StreamEvents while the component is mounted (one task's, or every task's;
 * from the first stored event when `fromStart`), calling `onEvent` for each event; when the stream breaks it reconnects after a pause, resuming after the last event seen
 * (after_event_id), so no event is lost or shown twice.
 */
export function useWarmingEvents(onEvent: (e: WarmingEvent) => void, taskId = "", fromStart = false): StreamState {
  const transport = useTransport();
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const [state, setState] = useState<StreamState>({ state: "connecting" });
  useEffect(() => {
    const client = createClient(WarmingService, transport);
    const ac = new AbortController();
    // "0": every stored event first (a task's history), then live ones.
    let last = fromStart ? "0" : "";
    void (async () => {
      for (let attempt = 0; !ac.signal.aborted; attempt++) {
        try {
          setState({ state: "live" });
          for await (const e of client.streamEvents({ taskId, afterEventId: last }, { signal: ac.signal })) {
            last = e.eventId || last;
            attempt = 0;
            handler.current(e);
          }
        } catch (err) {
          if (ac.signal.aborted || (err instanceof ConnectError && err.code === Code.Canceled)) return;
          setState({ state: "retrying", error: describeError(err).message });
        }
        await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
      }
    })();
    return () => ac.abort();
  }, [transport, taskId, fromStart]);
  return state;
}
