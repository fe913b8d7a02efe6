import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { toJsonString } from "@bufbuild/protobuf";
import type { Config } from "../config/config.ts";
import { RegisterResponseSchema } from "../gen/conveer/v1/platform_pb.js";
import type { RegisterResponse } from "../gen/conveer/v1/platform_pb.js";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { TelegramService } from "../gen/conveer/v1/telegram_pb.js";
import { MailService } from "../gen/conveer/v1/mail_pb.js";
import { MaxService } from "../gen/conveer/v1/max_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import type { Platform } from "../domain.ts";
import { messageOf } from "../errors.ts";
import { cliClient } from "./cli-client.ts";
import { batchId } from "./options.ts";
import { progressBar } from "./progress.ts";

const SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError(`must be a whole number from 1 to 100000, got ${JSON.stringify(v)}`);
  return n;
}

type RegisterOptions = { platform: Platform; count: number; concurrency: number; country: string; proxyCountry?: string; batch?: string; output: "table" | "json" };

/** A batch id for one run of the command: the platform, the UTC time and a random tail (vk-20261201T0512-3fa9). */
function newBatchId(platform: Platform): string {
  const t = new Date().toISOString().replace(/[-:]/g, "").slice(0, 13);
  return `${platform}-${t}-${randomBytes(2).toString("hex")}`;
}

/**
 * `conveer register`: runs the registration conveyor N times. It says first when the proxy pool has
 * fewer free slots than the batch needs, and the batch id its registrations carry. Table output: a progress bar, a summary and the new
 * account ids. JSON output: one RegisterResponse per line (proto JSON names, every field). Exits 1
 * when any registration failed.
 */
export function registerRegisterCommand(program: Command, getConfig: () => Config): void {
  program
    .command("register")
    .description("register new accounts through a platform service (the sandbox by default); prints the new account ids")
    .requiredOption("--platform <name>", `one of ${PLATFORMS.join(", ")}`, (v) => {
      if (!isPlatform(v)) throw new InvalidArgumentError(`must be one of ${PLATFORMS.join(", ")}`);
      return v;
    })
    .option("--count <n>", "how many accounts", positive, 1)
    .option("--concurrency <n>", "registrations in flight", positive, 4)
    .option("--country <cc>", "phone number country", "ru")
    .option("--proxy-country <cc>", "preferred proxy country")
    .option("--batch <id>", "the batch id every registration of this run gets (default: generated and printed); `registrations list --batch` shows them", batchId)
    .option("--output <format>", "table (progress and summary) or json (one result per line)", (v) => {
      if (v !== "table" && v !== "json") throw new InvalidArgumentError("must be table or json");
      return v;
    }, "table")
    .action(async (o: RegisterOptions) => {
      const config = getConfig();
      o.batch ??= newBatchId(o.platform);
      process.stderr.write(`batch ${o.batch}: \`npx conveer registrations list --platform ${o.platform} --batch ${o.batch}\` shows its registrations\n`);
      const free = await freeProxySlots(config).catch((err: unknown) => {
        process.stderr.write(`could not read the proxy pool (${messageOf(err)}); registering anyway\n`);
        return Infinity;
      });
      if (free < o.count) {
        process.stderr.write(`the proxy pool has ${free} free slot(s) for ${o.count} registration(s): the rest will fail at allocate_proxy; add proxies first with \`npx conveer proxies import FILE\`\n`);
      }
      const results = await registerAll(config, o);
      report(o, results);
      if (results.some((r) => !r.success)) process.exitCode = 1;
    });
}

/** Free allocation slots on healthy proxies (capacity − accounts held), over every page of ListProxies. */
async function freeProxySlots(config: Config): Promise<number> {
  const proxies = cliClient(ProxyService, "proxy", config);
  let free = 0;
  let pageToken = "";
  do {
    const page = await proxies.listProxies({ pageSize: 1000, pageToken }, { timeoutMs: 10_000 });
    for (const p of page.proxies) if (p.healthy) free += Math.max(0, p.capacity - p.allocated);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return free;
}

async function registerAll(config: Config, o: RegisterOptions): Promise<RegisterResponse[]> {
  const client = cliClient(SERVICES[o.platform], o.platform, config);
  const bar = o.output === "table" ? progressBar(`registering on ${o.platform}`, o.count) : undefined;
  const results: RegisterResponse[] = [];
  let next = 0;
  const worker = async () => {
    while (next < o.count) {
      next++;
      const r = await client.register({ country: o.country, proxyCountry: o.proxyCountry ?? "", batchId: o.batch });
      results.push(r);
      if (o.output === "json") process.stdout.write(toJsonString(RegisterResponseSchema, r, { alwaysEmitImplicit: true }) + "\n");
      bar?.increment();
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.count) }, worker));
  bar?.stop();
  return results;
}

function report(o: RegisterOptions, results: RegisterResponse[]): void {
  const ok = results.filter((r) => r.success);
  const summary = [`succeeded ${ok.length}, failed ${results.length - ok.length}`];
  const failedBy = new Map<string, RegisterResponse[]>();
  for (const r of results) if (!r.success) failedBy.set(r.failedStep, [...(failedBy.get(r.failedStep) ?? []), r]);
  for (const [step, rs] of failedBy) summary.push(`  failed at ${step}: ${rs.length} (e.g. ${rs[0].error})`);
  if (o.output === "json") {
    process.stderr.write(summary.join("\n") + "\n");
    return;
  }
  process.stdout.write(summary.join("\n") + "\n");
  if (ok.length) process.stdout.write(`created accounts:\n${ok.map((r) => `  ${r.accountId}`).join("\n")}\n`);
}
