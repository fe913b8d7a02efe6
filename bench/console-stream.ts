// The Warming page's ceiling: how many StreamEvents updates per second it takes in and renders
// without falling behind, with 500 running tasks. A real `conveer start` on PostgreSQL (sandbox,
// local proxies, 500 tasks RUNNING at CONVEER_TIME_SCALE=1, so the workers add almost nothing),
// the page open in chromium. Then this process writes action_completed events for those tasks
// into the store as the workers do (warming-store insertEvents: one transaction holding a
// transaction id first, the rows, one NOTIFY), at stepped rates: the server's event hub reads
// them and fans them out to every StreamEvents subscriber over HTTP, so the page gets them through
// the whole real path. A bare StreamEvents reader in this process is the baseline.
//
// Per step (BENCH_STEP_S seconds at an offered rate) it reports the rates written, read by the
// bare reader and rendered by the page (its "events since this page opened" counter, which moves
// only when React renders), the page's renders and frames per second, its main thread's busy
// share (CDP TaskDuration), stream drops (the hub drops a subscriber whose 1,000-event queue is
// full; the page resumes after its last event), and how long after the step the page had shown
// every event written. The page keeps up at a step when it renders at least 95 % of what the bare
// reader read during the step, shows everything within 1 s of the reader, and is never dropped. The ceiling is the highest such rate.
// When the server delivers less than offered (the bare reader falls short too), the page is held
// to what the server delivered: the bench then says the server, not the page, was the limit.
//
// Run: npm run build:console && CONVEER_TEST_DATABASE_URL=postgres://… node bench/console-stream.ts
//   (BENCH_TASKS, BENCH_STEP_S, BENCH_RATES=250,500,… to change the defaults)
import { writeFileSync } from "node:fs";
import pg from "pg";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { CDPSession, Page } from "playwright-core";
import { WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import { insertEvents } from "../src/warming/warming-store.ts";
import type { EventInput } from "../src/warming/warming-store.ts";
import type { Queryable } from "../src/store/db.ts";
import { setUp, startAll } from "../test/support/warming-system.ts";
import { launch, openPage } from "../test/console/browser.ts";

const TASKS = Number(process.env.BENCH_TASKS ?? 500);
const STEP_S = Number(process.env.BENCH_STEP_S ?? 8);
// BENCH_PROFILE=FILE.cpuprofile: the page's CPU profile during the step at BENCH_PROFILE_RATE (default 2000); bench/profile-summary.ts reads it.
const PROFILE = process.env.BENCH_PROFILE;
const RATES = (process.env.BENCH_RATES ?? "250,500,1000,2000,4000,8000,16000").split(",").map(Number);
if (!process.env.CONVEER_TEST_DATABASE_URL) {
  console.error("bench/console-stream.ts writes events into the server's store from this process: set CONVEER_TEST_DATABASE_URL (PostgreSQL)");
  process.exit(2);
}

/** Writes action_completed events for `tasks` at a steady rate, as the workers write them. */
function generator(pool: pg.Pool, tasks: string[]) {
  let written = 0;
  let seq = 0;
  const done = new Map<string, number>();
  async function write(n: number): Promise<void> {
    const at = new Date();
    const events: EventInput[] = Array.from({ length: n }, () => {
      const task = tasks[seq++ % tasks.length];
      const k = (done.get(task) ?? 0) + 1;
      done.set(task, k);
      return { task_id: task, event_type: "action_completed", at, data: { action_type: "ACTION_TYPE_VIEW_PROFILE", seq: String(k), progress: String(k % 100), actions_completed: String(k), actions_failed: "0" } };
    });
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      // insertEvents' precondition: the transaction holds a transaction id before it takes event ids.
      await c.query("SELECT pg_current_xact_id()");
      await insertEvents(c as unknown as Queryable, events);
      await c.query("COMMIT");
      written += n;
    } finally {
      c.release();
    }
  }
  return {
    written: () => written,
    /** `rate` events/s for `seconds`, in batches every 50 ms (two in flight at most). */
    async run(rate: number, seconds: number): Promise<void> {
      const t0 = performance.now();
      let queued = 0;
      const inFlight = new Set<Promise<void>>();
      while (performance.now() - t0 < seconds * 1000) {
        const due = Math.floor((rate * (performance.now() - t0)) / 1000) - queued;
        if (due > 0 && inFlight.size < 2) {
          queued += due;
          const p = write(due).finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      await Promise.all(inFlight);
    },
  };
}

/** Counters kept in the page: frames drawn, renders of the events counter, stream drops. */
async function instrument(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as Record<string, number>;
    w.__frames = 0;
    w.__renders = 0;
    w.__drops = 0;
    const frame = () => (w.__frames++, requestAnimationFrame(frame));
    requestAnimationFrame(frame);
    const seen = document.querySelector('[data-testid="events-seen"]')!;
    new MutationObserver(() => w.__renders++).observe(seen, { characterData: true, childList: true, subtree: true });
    const state = document.querySelector('[data-testid="stream-state"]')!;
    new MutationObserver(() => /retrying/.test(state.textContent ?? "") && w.__drops++).observe(state, { characterData: true, childList: true, subtree: true });
  });
}

type Sample = { at: number; written: number; read: number; page: number; frames: number; renders: number; drops: number; busy: number };

async function sample(page: Page, cdp: CDPSession, written: number, read: number): Promise<Sample> {
  const at = performance.now();
  const inPage = await page.evaluate(() => {
    const w = window as unknown as Record<string, number>;
    return { page: Number(document.querySelector('[data-testid="events-seen"]')!.textContent), frames: w.__frames, renders: w.__renders, drops: w.__drops };
  });
  const { metrics } = await cdp.send("Performance.getMetrics");
  const busy = metrics.find((m) => m.name === "TaskDuration")?.value ?? 0;
  return { at, written, read, ...inPage, busy };
}

const s = await setUp("postgres", { CONVEER_TIME_SCALE: "1" });
const browser = await launch();
const pool = new pg.Pool({ connectionString: s.dbUrl, max: 3 });
try {
  const sys = await s.start("bench");
  const ids = await s.accounts(sys, TASKS, "bench");
  const tasks = await startAll([sys], ids);
  const base = `http://127.0.0.1:${sys.http}`;
  const { context, page } = await openPage(browser);
  await page.goto(`${base}/warming?status=RUNNING`);
  await page.getByTestId("stream-state").getByText("Live updates: live").waitFor();
  await page.getByText(`${TASKS} tasks match`).waitFor();
  await instrument(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");

  const warming = createClient(WarmingService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
  const ac = new AbortController();
  let read = 0;
  let readerDrops = 0;
  const reader = (async () => {
    let after = "";
    while (!ac.signal.aborted) {
      try {
        for await (const e of warming.streamEvents({ afterEventId: after }, { signal: ac.signal })) (read++, (after = e.eventId));
      } catch (err) {
        if (ac.signal.aborted || (err instanceof ConnectError && err.code === Code.Canceled)) return;
        readerDrops++;
      }
    }
  })();
  const gen = generator(pool, tasks);
  // The workers' own events (a few a minute at scale 1) count too: the page and the reader see them.
  const baseline = await sample(page, cdp, 0, read);
  const offset = baseline.page - baseline.read;
  console.log(`${TASKS} tasks RUNNING, the Warming page open on them (100 rows shown); steps of ${STEP_S} s`);
  console.log("offered/s  written/s  reader/s  page/s  renders/s  frames/s  main-thread busy  drops  caught up: reader, page");
  let ceiling = 0;
  let keptUpMax = 0;
  let behind = 0;
  for (const rate of RATES) {
    const a = await sample(page, cdp, gen.written(), read);
    const readerDropsBefore = readerDrops;
    const profile = PROFILE && rate === Number(process.env.BENCH_PROFILE_RATE ?? 2000);
    if (profile) await cdp.send("Profiler.enable").then(() => cdp.send("Profiler.start"));
    await gen.run(rate, STEP_S);
    if (profile) writeFileSync(PROFILE, JSON.stringify((await cdp.send("Profiler.stop")).profile));
    const b = await sample(page, cdp, gen.written(), read);
    const secs = (b.at - a.at) / 1000;
    // How long after the step until the bare reader, and then the page, have every event written (at most 10 s each).
    let readerCaught = -1;
    let pageCaught = -1;
    let pageNow = 0;
    for (let t = performance.now(); performance.now() - t < 10_000 && pageCaught < 0; ) {
      pageNow = Number(await page.getByTestId("events-seen").textContent()) - offset;
      if (readerCaught < 0 && read >= gen.written()) readerCaught = (performance.now() - b.at) / 1000;
      if (pageNow >= gen.written() && readerCaught >= 0) pageCaught = (performance.now() - b.at) / 1000;
      else await new Promise((r) => setTimeout(r, 50));
    }
    const per = (x: number, y: number) => ((x - y) / secs).toFixed(0).padStart(7);
    const drops = b.drops - a.drops;
    const pageRate = (b.page - a.page) / secs;
    const readRate = (b.read - a.read) / secs;
    // The page keeps up when it renders what the server delivers (the bare reader's rate), is never dropped, and is
    // within 1 s of the reader: it has everything at most 1 s after the reader, or, when the server's backlog outlasts
    // the 10 s wait (the reader has not caught up either), is less than 1 s of the reader's rate behind it.
    const within = readerCaught >= 0 ? pageCaught >= 0 && pageCaught - readerCaught <= 1 : read - pageNow <= readRate;
    const keptUp = pageRate >= 0.95 * readRate && within && drops === 0;
    const serverLimited = readRate < 0.95 * rate;
    const secsOr = (x: number) => (x < 0 ? "  >10 s" : `${x.toFixed(2)} s`.padStart(7));
    console.log(
      `${String(rate).padStart(9)}  ${per(b.written, a.written)}    ${per(b.read, a.read)}  ${per(b.page, a.page)}  ${per(b.renders, a.renders)}    ${per(b.frames, a.frames)}   ${((100 * (b.busy - a.busy)) / secs).toFixed(0).padStart(5)} %          ${String(drops).padStart(4)}  ${secsOr(readerCaught)} ${secsOr(pageCaught)}${readerDrops > readerDropsBefore ? " (reader dropped too)" : ""}${keptUp ? "" : "  ← page behind"}${serverLimited ? "  (server below the offered rate)" : ""}`,
    );
    if (keptUp && !serverLimited) ceiling = rate;
    if (keptUp) keptUpMax = Math.max(keptUpMax, readRate);
    else behind++;
    if (behind >= 2) break;
    if ((b.written - a.written) / secs < 0.9 * rate) {
      console.log(`the writer reached only ${((b.written - a.written) / secs).toFixed(0)}/s of ${rate}/s: stopping`);
      break;
    }
    // Let everything settle before the next step.
    await new Promise((r) => setTimeout(r, 1000));
  }
  console.log(ceiling ? `Warming page: kept up at ${ceiling.toLocaleString()} updates/s offered (the highest step the server delivered in full)` : "no step was delivered in full by the server and kept up with by the page");
  console.log(`Warming page: the most it rendered without falling behind the bare reader: ${keptUpMax.toFixed(0)} updates/s`);
  ac.abort();
  await reader;
  await context.close();
} finally {
  await pool.end();
  await browser.close();
  await s.close();
}
