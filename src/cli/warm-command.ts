import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import type { Config } from "../config/config.ts";
import { WarmingService, WarmingStatus, WarmingTaskSchema } from "../gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import type { Client } from "@connectrpc/connect";
import { cliClient } from "./cli-client.ts";
import { collect, pages } from "./options.ts";
import { outputFormat, printMessages } from "./output.ts";
import { registerWarmWatch } from "./warm-watch.ts";
import type { OutputFormat } from "./output.ts";

const status = (s: WarmingStatus) => WarmingStatus[s] ?? String(s);
const line = (t: WarmingTask) =>
  `${t.id}  account ${t.accountId}  ${t.scenarioId}  ${status(t.status)}  ${t.progress}%  day ${t.currentDay}/${t.totalDays}  done ${t.actionsCompleted} failed ${t.actionsFailed}${t.error ? `  error: ${t.error}` : ""}`;

/** `conveer warm …`: start, watch (live progress bars from StreamEvents), pause, resume, stop, stats. */
export function registerWarmCommands(program: Command, getConfig: () => Config): void {
  const client = () => {
    const config = getConfig();
    return cliClient(WarmingService, "warming", config);
  };
  const warm = program.command("warm").description("warming tasks: multi-day scenarios run against accounts");

  warm
    .command("start <account>")
    .description("start warming an ACTIVE account")
    .option("--scenario <id>", "scenario id (default basic; see `conveer warm scenarios`)", "")
    .option("--days <n>", "override the scenario's length (its day plan is scaled to fit)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 365) throw new InvalidArgumentError(`must be a whole number of days from 1 to 365, got ${JSON.stringify(v)}`);
      return n;
    })
    .action(async (account: string, o: { scenario: string; days?: number }) => {
      const t = await client().startWarming({ accountId: account, scenarioId: o.scenario, durationDays: o.days ?? 0 });
      process.stdout.write(`${line(t)}\n`);
    });

  for (const [name, verb] of [
    ["pause", "pauseWarming"],
    ["resume", "resumeWarming"],
    ["stop", "stopWarming"],
    ["status", "getWarmingStatus"],
  ] as const) {
    warm
      .command(`${name} <task>`)
      .description(name === "stop" ? "stop a task for good" : name === "status" ? "show a task's status and progress" : `${name} a task`)
      .action(async (task: string) => {
        const t = await client()[verb]({ taskId: task });
        process.stdout.write(`${line(t)}\n`);
      });
  }

  registerWarmList(warm, client);

  warm
    .command("scenarios")
    .description("list the scenarios (built-in and from CONVEER_SCENARIOS_DIR)")
    .action(async () => {
      const r = await client().listScenarios({});
      for (const s of r.scenarios) process.stdout.write(`${s.id}${s.isDefault ? " (default)" : ""}\t${s.totalDays} days\t${s.source}\t${s.name}\n`);
    });

  warm
    .command("stats")
    .description("statistics: tasks by status, actions by type, success rate, actions per day")
    .option("--account <id>", "only this account", "")
    .option("--task <id>", "only this task", "")
    .option("--platform <name>", "only this platform", "")
    .action(async (o: { account: string; task: string; platform: string }) => {
      const s = await client().getStatistics({ accountId: o.account, taskId: o.task, platform: o.platform });
      process.stdout.write(`tasks: ${Object.entries(s.tasksByStatus).map(([k, v]) => `${k}=${v}`).join(" ") || "none"}\n`);
      process.stdout.write(`actions: completed ${s.actionsCompleted}, failed ${s.actionsFailed}, success ${(s.successRate * 100).toFixed(1)}%, mean ${s.meanActionDurationMs.toFixed(1)} ms\n`);
      for (const a of s.byActionType) process.stdout.write(`  ${a.actionType.padEnd(28)} completed ${a.completed}  failed ${a.failed}  mean ${a.meanDurationMs.toFixed(1)} ms\n`);
      for (const d of s.byDay) process.stdout.write(`  ${d.day}  completed ${d.completed}  failed ${d.failed}\n`);
    });

  registerWarmWatch(warm, client);
}

/** `conveer warm list`: tasks newest first, every page up to --limit, as a table, JSON Lines or CSV. */
function registerWarmList(warm: Command, client: () => Client<typeof WarmingService>): void {
  warm
    .command("list")
    .description("list warming tasks, newest first (every page, up to --limit)")
    .option("--status <name>", "RUNNING, PAUSED, COMPLETED, FAILED, STOPPED or PENDING", (v) => {
      const n = WarmingStatus[v.toUpperCase() as keyof typeof WarmingStatus];
      if (typeof n !== "number" || n === WarmingStatus.UNSPECIFIED) throw new InvalidArgumentError("must be RUNNING, PAUSED, COMPLETED, FAILED, STOPPED or PENDING");
      return n;
    })
    .option("--platform <name>", "vk, telegram, mail or max", "")
    .option("--account <id>", "one account's tasks", "")
    .option("--scenario <id>", "one scenario's tasks", "")
    .option("--limit <n>", "at most this many tasks", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`must be a whole number of at least 1, got ${JSON.stringify(v)}`);
      return n;
    }, 1000)
    .option("--output <format>", "table, json (one task per line) or csv", outputFormat, "table")
    .action(async (o: { status?: WarmingStatus; platform: string; account: string; scenario: string; limit: number; output: OutputFormat }) => {
      const c = client();
      const filter = { status: o.status ?? WarmingStatus.UNSPECIFIED, platform: o.platform, accountId: o.account, scenarioId: o.scenario };
      const tasks = await collect(pages((pageToken, pageSize) => c.listWarmingTasks({ ...filter, pageSize, pageToken }).then((p) => ({ items: p.tasks, next: p.nextPageToken })), 1000, o.limit));
      printMessages(o.output, WarmingTaskSchema, tasks, [
        ["task", (t) => t.id],
        ["account", (t) => t.accountId],
        ["login", (t) => t.accountLogin],
        ["platform", (t) => t.platform],
        ["scenario", (t) => t.scenarioId],
        ["status", (t) => status(t.status)],
        ["progress", (t) => `${t.progress}%`],
        ["day", (t) => `${t.currentDay}/${t.totalDays}`],
        ["done", (t) => t.actionsCompleted],
        ["failed", (t) => t.actionsFailed],
      ]);
    });
}
