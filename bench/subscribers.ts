/**
 * StreamEvents subscribers in a child process (bench/warming.ts forks it through Loadgen), so the
 * server's fan-out is measured without the clients' decoding on its CPU.
 *
 * Protocol (IPC): "ready" on start; the parent sends `open` (n subscribers over real gRPC, one
 * Connect client and HTTP/2 connection each, every event after `afterId`), then `collect` with
 * the number of events written: the child waits until every live subscriber has that many (or
 * 15 s), closes the streams and answers `result`. Lag = receipt − the event's timestamp, in real
 * ms: the parent's clock read `scenarioAt` at wall time `wallAt` and runs `scale` times real time.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { quantile } from "./stats.ts";

export type SubscribersMessage =
  | { type: "open"; addr: string; n: number; afterId: number; scenarioAt: number; wallAt: number; scale: number }
  | { type: "collect"; written: number };

/** What `collect` answers. */
export type SubscribersResult = { type: "result"; delivered: number; complete: number; dropped: string[]; seconds: number; lagP50: number; lagP99: number };

type State = { counts: number[]; ended: boolean[]; dropped: string[]; lags: number[]; first: number; last: number; ac: AbortController; streams: Promise<void>[]; sessions: Http2SessionManager[] };
let state: State | undefined;

function open(m: Extract<SubscribersMessage, { type: "open" }>): void {
  const s: State = (state = { counts: new Array<number>(m.n).fill(0), ended: new Array<boolean>(m.n).fill(false), dropped: [], lags: [], first: 0, last: 0, ac: new AbortController(), streams: [], sessions: [] });
  const scenarioNow = () => m.scenarioAt + (Date.now() - m.wallAt) * m.scale;
  for (let i = 0; i < m.n; i++) {
    const client = remoteClient(WarmingService, { addr: m.addr, sessions: s.sessions });
    s.streams.push(
      (async () => {
        try {
          for await (const e of client.streamEvents({ afterEventId: String(m.afterId) }, { signal: s.ac.signal })) {
            s.last = performance.now();
            s.first ||= s.last;
            s.counts[i]++;
            // Lags from the first ten subscribers; the rest only count.
            if (i < 10 && e.timestamp) s.lags.push((scenarioNow() - timestampMs(e.timestamp)) / m.scale);
          }
        } catch (err) {
          if (!s.ac.signal.aborted) s.dropped.push(String(err));
        } finally {
          s.ended[i] = true;
        }
      })(),
    );
  }
}

async function collect(written: number): Promise<SubscribersResult> {
  const s = state!;
  const until = Date.now() + 15_000;
  while (Date.now() < until && s.counts.some((c, i) => c < written && !s.ended[i])) await new Promise((r) => setTimeout(r, 50));
  s.ac.abort();
  await Promise.all(s.streams);
  for (const x of s.sessions) x.abort();
  const l = Float64Array.from(s.lags);
  return {
    type: "result",
    delivered: s.counts.reduce((a, b) => a + b, 0),
    complete: s.counts.filter((c) => c === written).length,
    dropped: s.dropped,
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
