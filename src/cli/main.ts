#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { pino } from "pino";
import { SERVICE_NAMES, loadConfig } from "../config/config.ts";
import type { Config, ServiceName } from "../config/config.ts";
import { startApp } from "../app.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";
import { withCliOptions } from "./cli-client.ts";
import { registerAdminCommands } from "./admin-commands.ts";
import { registerDemoCommand } from "./demo-command.ts";
import { registerImportCommands } from "./import-commands.ts";
import { registerRegisterCommand } from "./register-command.ts";
import { registerSandboxCommand } from "./sandbox-command.ts";
import { registerWarmCommands } from "./warm-command.ts";

/** The `conveer` command: starts the system and administers it. */
export function buildCli(getConfig: () => Config = () => loadConfig()): Command {
  const program = new Command("conveer")
    .description("Conveer: accounts, credentials, proxies, SMS activations and warming over gRPC")
    .version(VERSION, "-V, --version")
    .showHelpAfterError()
    // Usage errors throw instead of exiting, so runCli can exit 2 for them (1 is for failures).
    .exitOverride()
    .option("--server <url>", "call the services through this server's HTTP port (Connect), e.g. http://127.0.0.1:8080; default: CONVEER_SERVER, else each service's *_SERVICE_GRPC_ADDR", (v) => {
      if (!/^https?:\/\/[^/\s]+/.test(v)) throw new InvalidArgumentError(`must be an http(s) URL like http://127.0.0.1:8080, got ${JSON.stringify(v)}`);
      return v;
    })
    .option("--ca <file>", "CA certificate (PEM) to trust for a TLS server; default: CONVEER_CA");
  const cliConfig = () => withCliOptions(getConfig(), program.opts<{ server?: string; ca?: string }>());

  program
    .command("start")
    .description("start the services (all by default) on their ports, the store, and the HTTP port")
    .option("--services <list>", `comma-separated subset of ${SERVICE_NAMES.join(",")}`, parseServices)
    .action(async (opts: { services?: ServiceName[] }) => {
      const config = getConfig();
      const release = config.databaseUrl ? async () => {} : await holdDataDirLock(config.dataDir);
      const log = pino({ level: config.logLevel, base: { pid: process.pid } });
      let app;
      try {
        app = await startApp({ config, services: opts.services, log });
      } catch (err) {
        await release();
        throw err;
      }
      const stop = (signal: string) => {
        log.info({ signal }, "stopping: draining in-flight calls");
        const hard = setTimeout(() => process.exit(1), 15_000);
        hard.unref();
        app.stop(5000).then(
          async () => {
            await release();
            log.info("stopped");
            process.exit(0);
          },
          (err) => {
            log.error({ err: String(err) }, "stop failed");
            process.exit(1);
          },
        );
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });

  registerAdminCommands(program, cliConfig);
  registerDemoCommand(program);
  registerImportCommands(program, cliConfig);
  registerRegisterCommand(program, cliConfig);
  registerSandboxCommand(program, cliConfig);
  registerWarmCommands(program, cliConfig);
  return program;
}

const VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function parseServices(v: string): ServiceName[] {
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!(SERVICE_NAMES as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown service ${JSON.stringify(n)}; choose from ${SERVICE_NAMES.join(", ")}`);
  }
  if (names.length === 0) throw new InvalidArgumentError("name at least one service");
  return names as ServiceName[];
}

/**
 * Runs the CLI on argv. Exit codes: 0 done; 1 a failure (printed as "conveer: <message>"), or some
 * items of an import or batch failed; 2 bad usage (commander has printed what was wrong).
 */
export function runCli(argv: string[] = process.argv): void {
  buildCli()
    .parseAsync(argv)
    .catch((err: Error) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
      process.stderr.write(`conveer: ${err.message}\n`);
      process.exit(1);
    });
}

if (import.meta.main) runCli();
