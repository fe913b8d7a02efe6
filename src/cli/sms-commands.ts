import type { Command } from "commander";
import type { Config } from "../config/config.ts";
import { GetBalanceResponseSchema, SMSActivationSchema, SMSService, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { cliClient } from "./cli-client.ts";
import { enumName, enumValue, intBetween, pages, platformName, timeText } from "./options.ts";
import { outputFormat, printMessages, printPages } from "./output.ts";
import type { OutputFormat } from "./output.ts";

type ActivationsOptions = { status?: SMSStatus; service: string; provider: string; limit?: number; output: OutputFormat };

/** `conveer sms activations|balance`: rented numbers and the provider's balance. */
export function registerSmsCommands(program: Command, getConfig: () => Config): void {
  const client = () => cliClient(SMSService, "sms", getConfig());
  const sms = program.command("sms").description("SMS activations (rented numbers) and the provider's balance");

  sms
    .command("activations")
    .description("list activations, newest first (every page, up to --limit); numbers are shown")
    .option("--status <name>", "PENDING, WAITING_CODE, CODE_RECEIVED, COMPLETED, CANCELLED or FAILED", enumValue(SMSStatus, "SMS_STATUS_"))
    .option("--service <platform>", "only numbers rented for this platform (vk, telegram, mail, max)", platformName)
    .option("--provider <name>", "only this provider", "")
    .option("--limit <n>", "at most this many activations (default: every page)", intBetween(1, Number.MAX_SAFE_INTEGER))
    .option("--output <format>", "table, json (one activation per line) or csv", outputFormat, "table")
    .action(async (o: ActivationsOptions) => {
      const c = client();
      await printPages(
        o.output,
        SMSActivationSchema,
        pages(
          async (pageToken, size) => {
            const r = await c.listActivations({ status: o.status, service: o.service ?? "", provider: o.provider, pageSize: size, pageToken });
            return { items: r.activations, next: r.nextPageToken };
          },
          1000,
          o.limit,
        ),
        [
          ["id", (a) => a.id],
          ["phone", (a) => a.phone],
          ["service", (a) => a.service],
          ["country", (a) => a.country],
          ["status", (a) => enumName(SMSStatus, a.status, "SMS_STATUS_")],
          ["provider", (a) => a.provider],
          ["price", (a) => a.price],
          ["refunded", (a) => String(a.refunded)],
          ["created", (a) => timeText(a.createdAt)],
          ["expires", (a) => timeText(a.expiresAt)],
        ],
      );
    });

  sms
    .command("balance")
    .description("the balance at a provider (the default one unless --provider)")
    .option("--provider <name>", "provider name", "")
    .option("--output <format>", "table, json or csv", outputFormat, "table")
    .action(async (o: { provider: string; output: OutputFormat }) => {
      const b = await client().getBalance({ provider: o.provider });
      printMessages(o.output, GetBalanceResponseSchema, [b], [
        ["provider", (x) => x.provider],
        ["balance", (x) => x.balance.toFixed(2)],
        ["currency", (x) => x.currency],
      ]);
    });
}
