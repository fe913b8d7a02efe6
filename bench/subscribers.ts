/**
 * StreamEvents subscribers in a child process (bench/warming.ts forks it through Loadgen), so the
 * server's fan-out is measured without the clients' decoding on its CPU.
 *
 * Protocol (IPC): "ready" on start; the parent sends `open` (n subscribers over real gRPC, one
 * Connect client and HTTP/2 connection each, every event after `afterId`), then `collect` with
 * the number of events written: the child waits until every subscriber has that many (or 60 s),
 * closes the streams and answers `result`. A subscriber dropped for falling behind
 * (RESOURCE_EXHAUSTED) reconnects from the last event_id it got, as `conveer warm watch` does;
 * `resumes` counts those reconnects and `duplicates` any event received twice. Lag = receipt − the event's timestamp, in real
 * ms: the parent's clock read `scenarioAt` at wall time `wallAt` and runs `scale` times real time.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { quantile } from "./stats.ts";

export type SubscribersMessage =
  | { type: "open"; addr: string; n: number; afterId: number; scenarioAt: number; wallAt: number; scale: number }
  | { type: "collect"; written: number };

/** What `collect` answers. */
export type SubscribersResult = { type: "result"; delivered: number; complete: number; resumes: number; duplicates: number; failed: string[]; seconds: number; lagP50: number; lagP99: number };

type State = { counts: number[]; ended: boolean[]; resumes: number; duplicates: number; failed: string[]; lags: number[]; first: number; last: number; ac: AbortController; streams: Promise<void>[]; sessions: Http2SessionManager[] };
let state: State | undefined;

function open(m: Extract<SubscribersMessage, { type: "open" }>): void {
  const s: State = (state = { counts: new Array<number>(m.n).fill(0), ended: new Array<boolean>(m.n).fill(false), resumes: 0, duplicates: 0, failed: [], lags: [], first: 0, last: 0, ac: new AbortController(), streams: [], sessions: [] });
  const scenarioNow = () => m.scenarioAt + (Date.now() - m.wallAt) * m.scale;
  for (let i = 0; i < m.n; i++) {
    const client = remoteClient(WarmingService, { addr: m.addr, sessions: s.sessions });
    s.streams.push(
      (async () => {
        let after = m.afterId;
        try {
          for (;;) {
            try {
              for await (const e of client.streamEvents({ afterEventId: String(after) }, { signal: s.ac.signal })) {
                const id = Number(e.eventId);
                if (id <= after) {
                  s.duplicates++;
                  continue;
                }
                after = id;
                s.last = performance.now();
                s.first ||= s.last;
                s.counts[i]++;
                // Lags from the first ten subscribers; the rest only count.
                if (i < 10 && e.timestamp) s.lags.push((scenarioNow() - timestampMs(e.timestamp)) / m.scale);
              }
              return;
            } catch (err) {
              if (s.ac.signal.aborted) return;
              if (!(err instanceof ConnectError && err.code === Code.ResourceExhausted)) throw err;
              s.resumes++;
            }
          }
        } catch (err) {
          s.failed.push(String(err));
        } finally {
          s.ended[i] = true;
        }
      })(),
    );
  }
}

async function collect(written: number): Promise<SubscribersResult> {
  const s = state!;
  const until = Date.now() + 60_000;
  while (Date.now() < until && s.counts.some((c, i) => c < written && !s.ended[i])) await new Promise((r) => setTimeout(r, 50));
  s.ac.abort();
  await Promise.all(s.streams);
  for (const x of s.sessions) x.abort();
  const l = Float64Array.from(s.lags);
  return {
    type: "result",
    delivered: s.counts.reduce((a, b) => a + b, 0),
    complete: s.counts.filter((c) => c === written).length,
    resumes: s.resumes,
    duplicates: s.duplicates,
    failed: s.failed,
    seconds: (s.last - s.first) / 1000,
    lagP50: quantile(l, 0.5),
    lagP99: quantile(l, 0.99),
  };
}

process.on("disconnect", () => process.exit(0));
process.on("message", (m: SubscribersMessage) => {
  if (m.type === "open") {
    open(m);
    process.send!({ type: "opened" });
  } else {
    collect(m.written).then(
      (r) => process.send!(r),
      (err: unknown) => process.send!({ type: "error", message: String((err as Error).stack ?? err) }),
    );
  }
});
process.send!({ type: "ready" });
