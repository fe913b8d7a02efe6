import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import type { Config, ServiceName } from "../config/config.ts";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { TelegramService } from "../gen/conveer/v1/telegram_pb.js";
import { MailService } from "../gen/conveer/v1/mail_pb.js";
import { MaxService } from "../gen/conveer/v1/max_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { remoteClient } from "../server/clients.ts";
import { progressBar } from "./progress.ts";

const SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError(`must be a whole number from 1 to 100000, got ${JSON.stringify(v)}`);
  return n;
}

/** `conveer register`: runs the registration conveyor N times with a progress bar and a summary. */
export function registerRegisterCommand(program: Command, getConfig: () => Config): void {
  program
    .command("register")
    .description("register new accounts through a platform service (the sandbox by default), with a progress bar and a summary")
    .requiredOption("--platform <name>", `one of ${PLATFORMS.join(", ")}`, (v) => {
      if (!isPlatform(v)) throw new InvalidArgumentError(`must be one of ${PLATFORMS.join(", ")}`);
      return v;
    })
    .option("--count <n>", "how many accounts", positive, 1)
    .option("--concurrency <n>", "registrations in flight", positive, 4)
    .option("--country <cc>", "phone number country", "ru")
    .option("--proxy-country <cc>", "preferred proxy country")
    .action(async (o: { platform: Platform; count: number; concurrency: number; country: string; proxyCountry?: string }) => {
      const config = getConfig();
      const client = remoteClient(SERVICES[o.platform], { addr: config.addrs[o.platform as ServiceName], token: config.token, tls: Boolean(config.tlsCert) });
      const bar = progressBar(`registering on ${o.platform}`, o.count);
      const failedBy = new Map<string, number>();
      const examples = new Map<string, string>();
      let ok = 0;
      let next = 0;
      const worker = async () => {
        while (next < o.count) {
          next++;
          const r = await client.register({ country: o.country, proxyCountry: o.proxyCountry ?? "" });
          if (r.success) ok++;
          else {
            failedBy.set(r.failedStep, (failedBy.get(r.failedStep) ?? 0) + 1);
            if (!examples.has(r.failedStep)) examples.set(r.failedStep, r.error);
          }
          bar.increment();
        }
      };
      await Promise.all(Array.from({ length: Math.min(o.concurrency, o.count) }, worker));
      bar.stop();
      process.stdout.write(`succeeded ${ok}, failed ${o.count - ok}\n`);
      for (const [step, n] of failedBy) process.stdout.write(`  failed at ${step}: ${n} (e.g. ${examples.get(step)})\n`);
      if (ok === 0 && o.count > 0) process.exitCode = 1;
    });
}
