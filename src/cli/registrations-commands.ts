import type { Command } from "commander";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Config } from "../config/config.ts";
import { RegistrationSchema, RegistrationState } from "../gen/conveer/v1/platform_pb.js";
import type { Registration } from "../gen/conveer/v1/platform_pb.js";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { TelegramService } from "../gen/conveer/v1/telegram_pb.js";
import { MailService } from "../gen/conveer/v1/mail_pb.js";
import { MaxService } from "../gen/conveer/v1/max_pb.js";
import type { Platform } from "../domain.ts";
import { cliClient } from "./cli-client.ts";
import { batchId, enumName, enumValue, intBetween, pages, platformName, timeText, timeValue } from "./options.ts";
import { outputFormat, printMessages, printPages } from "./output.ts";
import type { Column, OutputFormat } from "./output.ts";

// The four platform services share the registration methods (platform.proto); VKService stands for their shape.
const SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;
const client = (platform: Platform, config: Config) => cliClient(SERVICES[platform] as typeof VKService, platform, config);

const COLUMNS: readonly Column<Registration>[] = [
  ["id", (r) => r.id],
  ["platform", (r) => r.platform],
  ["state", (r) => enumName(RegistrationState, r.state)],
  ["step", (r) => r.step],
  ["failed_step", (r) => r.failedStep],
  ["error", (r) => r.error],
  ["login", (r) => r.login],
  ["account", (r) => r.accountId],
  ["proxy", (r) => r.proxyId],
  ["activation", (r) => r.activationId],
  ["created", (r) => timeText(r.createdAt)],
  ["finished", (r) => timeText(r.finishedAt)],
  ["batch", (r) => r.batchId],
];

type ListOptions = { platform: Platform; state?: RegistrationState; since?: Timestamp; until?: Timestamp; batch?: string; limit?: number; output: OutputFormat };

/** `conveer registrations list|show`: the durable records of Register runs, from each platform service. */
export function registerRegistrationsCommands(program: Command, getConfig: () => Config): void {
  const registrations = program.command("registrations").description("registration runs (the records behind Register's registration_id)");

  registrations
    .command("list")
    .description("list a platform's registrations, newest first (every page, up to --limit)")
    .requiredOption("--platform <name>", "vk, telegram, mail or max", platformName)
    .option("--state <state>", "RUNNING, SUCCEEDED or FAILED", enumValue(RegistrationState, "REGISTRATION_STATE_"))
    .option("--since <time>", "created at or after: ISO 8601 (2026-11-30T18:00:00Z) or a duration ago (90m, 24h, 7d)", timeValue)
    .option("--until <time>", "created before (same forms as --since)", timeValue)
    .option("--batch <id>", "only this batch (the one `conveer register` printed, or RegisterRequest.batch_id)", batchId)
    .option("--limit <n>", "at most this many registrations (default: every page)", intBetween(1, Number.MAX_SAFE_INTEGER))
    .option("--output <format>", "table, json (one registration per line) or csv", outputFormat, "table")
    .action(async (o: ListOptions) => {
      const c = client(o.platform, getConfig());
      await printPages(
        o.output,
        RegistrationSchema,
        pages(
          async (pageToken, size) => {
            const r = await c.listRegistrations({ state: o.state, createdAfter: o.since, createdBefore: o.until, batchId: o.batch, pageSize: size, pageToken });
            return { items: r.registrations, next: r.nextPageToken };
          },
          1000,
          o.limit,
        ),
        COLUMNS,
      );
    });

  registrations
    .command("show <id>")
    .description("one registration: state, step reached, failed step and reason, account, proxy, number, timings")
    .requiredOption("--platform <name>", "vk, telegram, mail or max", platformName)
    .option("--output <format>", "table, json or csv", outputFormat, "table")
    .action(async (id: string, o: { platform: Platform; output: OutputFormat }) => {
      const r = await client(o.platform, getConfig()).getRegistration({ registrationId: id });
      printMessages(o.output, RegistrationSchema, [r], [...COLUMNS, ["updated", (x) => timeText(x.updatedAt)]]);
    });
}
