import type { Command } from "commander";
import cliProgress from "cli-progress";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import { WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import type { WarmingEvent, WarmingService, WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import { collect, enumName, pages, shortName } from "./options.ts";

type Warming = Client<typeof WarmingService>;
type Bars = { bars: cliProgress.MultiBar; byTask: Map<string, cliProgress.SingleBar>; labels: Map<string, string>; say(line: string): void };

const OPEN = new Set([WarmingStatus.PENDING, WarmingStatus.RUNNING, WarmingStatus.PAUSED]);
const ENDED = new Set(["COMPLETED", "FAILED", "STOPPED"]);
const short = (s: WarmingStatus | string) => (typeof s === "string" ? shortName(s, "WARMING_STATUS_") : enumName(WarmingStatus, s, "WARMING_STATUS_"));

/**
 * `conveer warm watch`: a live progress bar per task (named by the account's login), fed by
 * StreamEvents and resumed from the last event after a disconnect. The connection's state is
 * printed as it changes: an unreachable server and each reconnect at once; a refused token ends
 * the command (exit 1) instead of retrying forever. A bar shows COMPLETED / FAILED / STOPPED when
 * its task ends; `--all` also shows tasks that ended before the watch started.
 */
export function registerWarmWatch(warm: Command, client: () => Warming): void {
  warm
    .command("watch [task]")
    .description("live progress bars for one task or all, fed by StreamEvents; prints connection changes")
    .option("--all", "also show tasks that ended before the watch started")
    .action(async (task: string | undefined, o: { all?: boolean }) => {
      const c = client();
      const ui = createBars();
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      try {
        await watch(c, ui, task ?? "", Boolean(o.all), ac.signal);
      } finally {
        ui.bars.stop();
      }
    });
}

function createBars(): Bars {
  const bars = new cliProgress.MultiBar(
    { format: "{task} [{bar}] {percentage}% | {status} | {last}", stream: process.stderr, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  // On a terminal, lines go above the bars; elsewhere (a pipe, a log file) straight to stderr.
  const say = (line: string) => (process.stderr.isTTY ? bars.log(`${line}\n`) : process.stderr.write(`${line}\n`));
  return { bars, byTask: new Map(), labels: new Map(), say };
}

/** Streams until aborted; a refused token throws (the CLI exits 1), anything else reconnects from the last event. */
async function watch(c: Warming, ui: Bars, taskId: string, all: boolean, signal: AbortSignal): Promise<void> {
  let after = "";
  let connected = false;
  let failures = 0;
  while (!signal.aborted) {
    const stop = new AbortController();
    try {
      // The stream is asked for before the bars are seeded: a task that ends in between is in the
      // stream (from the first connect there is no earlier event to resume after).
      const events = c.streamEvents({ taskId, afterEventId: after }, { signal: AbortSignal.any([signal, stop.signal]) })[Symbol.asyncIterator]();
      const first = events.next();
      first.catch(() => {}); // awaited below; a failed seed must not leave it unhandled
      if (!connected) {
        // The server answered: the bars are current, and the stream resumes after the last event seen.
        const n = await seed(c, ui, taskId, all);
        ui.say(failures ? `reconnected; resuming after event ${after || "(start)"}` : `connected; watching ${n} task(s)`);
        connected = true;
        failures = 0;
      }
      for (let r = await first; !r.done; r = await events.next()) {
        after = r.value.eventId;
        await show(c, ui, r.value);
      }
    } catch (err) {
      if (signal.aborted) return;
      const e = ConnectError.from(err);
      if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
        throw new Error(`the server refused the token (${Code[e.code]}: ${e.rawMessage}); set CONVEER_TOKEN to a token with the warming:read scope`);
      }
      if (e.code === Code.InvalidArgument || e.code === Code.NotFound) throw new Error(e.rawMessage);
      failures++;
      ui.say(`${connected ? "disconnected" : "cannot reach the warming service"} (${Code[e.code]}: ${e.rawMessage}); retrying in 1 s (attempt ${failures})`);
      connected = false;
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      stop.abort(); // this attempt's stream, if it is still open (a seed that failed)
    }
  }
}

/** Bars for the tasks there already are: open ones (and, with --all, ended ones), newest first; answers how many are shown. */
async function seed(c: Warming, ui: Bars, taskId: string, all: boolean): Promise<number> {
  const tasks = taskId ? [await c.getWarmingStatus({ taskId })] : await existingTasks(c, all);
  for (const t of tasks) {
    if (!all && !OPEN.has(t.status)) continue;
    barFor(ui, t).update(t.progress, { status: short(t.status) });
    if (!OPEN.has(t.status)) ui.say(`${ui.labels.get(t.id)}: ${short(t.status)}`);
  }
  return ui.byTask.size;
}

/**
 * Every open task (every page of each open status), or with --all every task, newest first. One
 * page of 200 of any status was read before, so past the newest 200 tasks open ones had no bar
 * until their next event (a paused one never) and --all missed older ends.
 */
async function existingTasks(c: Warming, all: boolean): Promise<WarmingTask[]> {
  const tasks: WarmingTask[] = [];
  for (const status of all ? [WarmingStatus.UNSPECIFIED] : [...OPEN]) {
    tasks.push(...(await collect(pages((pageToken, pageSize) => c.listWarmingTasks({ status, pageSize, pageToken }).then((p) => ({ items: p.tasks, next: p.nextPageToken })), 1000))));
  }
  return tasks.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

function barFor(ui: Bars, t: WarmingTask): cliProgress.SingleBar {
  let bar = ui.byTask.get(t.id);
  if (!bar) {
    const label = `${t.accountLogin || t.accountId} (${t.id.slice(-6)})`;
    bar = ui.bars.create(100, t.progress, { task: label, status: short(t.status), last: "" });
    ui.byTask.set(t.id, bar);
    ui.labels.set(t.id, label);
  }
  return bar;
}

async function show(c: Warming, ui: Bars, e: WarmingEvent): Promise<void> {
  const bar = ui.byTask.get(e.taskId) ?? barFor(ui, await c.getWarmingStatus({ taskId: e.taskId }));
  const progress = Number(e.data.progress ?? Number.NaN);
  bar.update(Number.isFinite(progress) ? progress : bar.getProgress() * 100, {
    ...(e.data.to ? { status: short(e.data.to) } : {}),
    last: `${e.eventType}${e.data.action_type ? ` ${e.data.action_type}` : ""}${e.data.error ? `: ${e.data.error}` : ""}`,
  });
  // An end is also a line of its own: it stays readable when stderr is not a terminal (no bars drawn there).
  if (e.eventType === "status_changed" && ENDED.has(short(e.data.to ?? ""))) {
    ui.say(`${ui.labels.get(e.taskId)}: ${short(e.data.to)}${e.data.reason ? ` (${e.data.reason})` : ""}`);
  }
}
