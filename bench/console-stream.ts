// The Warming page under a stream of events: 500 running tasks on a real `conveer start` (sandbox,
// local proxies, a two-day scenario at 21600× real time), the page open in chromium; reports the
// events per second the page took in and rendered (batched per frame) beside a bare StreamEvents
// reader in this process, and how far behind the page was when the reader had seen the last event.
// Run: npm run build:console && node bench/console-stream.ts   (BENCH_TASKS=… to change the count)
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { PER_TASK, setUp, startAll } from "../test/support/warming-system.ts";
import { launch, openPage } from "../test/console/browser.ts";

const TASKS = Number(process.env.BENCH_TASKS ?? 500);
const s = await setUp("pglite");
const browser = await launch();
try {
  const sys = await s.start("bench");
  const ids = await s.accounts(sys, TASKS, "bench");
  const base = `http://127.0.0.1:${sys.http}`;
  const { context, page } = await openPage(browser);
  await page.goto(`${base}/warming`);
  await page.getByTestId("stream-state").getByText("Live updates: live").waitFor();
  const warming = createClient(WarmingService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
  const ac = new AbortController();
  let seen = 0;
  let lastAt = 0;
  const expected = TASKS * (PER_TASK * 2 + 2); // started + completed per action, RUNNING and COMPLETED per task
  const reader = (async () => {
    try {
      for await (const _ of warming.streamEvents({}, { signal: ac.signal })) {
        seen++;
        lastAt = performance.now();
        if (seen >= expected) break;
      }
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
    }
  })();
  const t0 = performance.now();
  await startAll([sys], ids);
  const pageCount = async () => Number(await page.getByTestId("events-seen").textContent());
  const samples: number[] = [];
  while (performance.now() - t0 < 120_000) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push(await pageCount());
    if (seen >= expected && samples.at(-1)! >= seen) break;
  }
  ac.abort();
  await reader;
  const pageSeen = await pageCount();
  const caughtUp = performance.now();
  const secs = (lastAt - t0) / 1000;
  console.log(`${TASKS} tasks: ${seen} events in ${secs.toFixed(1)} s (${(seen / secs).toFixed(0)}/s) read by a bare StreamEvents client`);
  console.log(`Warming page: ${pageSeen} events taken in and rendered (${((100 * pageSeen) / Math.max(1, seen)).toFixed(1)} %), ${(pageSeen / secs).toFixed(0)}/s; caught up ${((caughtUp - lastAt) / 1000).toFixed(1)} s after the reader's last event (sampled each second: ${samples.join(", ")})`);
  await context.close();
} finally {
  await browser.close();
  await s.close();
}
