#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { createLogger } from "../server/logger.ts";
import { SERVICE_NAMES, loadConfig } from "../config/config.ts";
import type { Config, ServiceName } from "../config/config.ts";
import { startApp } from "../app.ts";
import { holdDataDirLock } from "./data-dir-lock.ts";
import { withCliOptions } from "./cli-client.ts";
import type { CliOptions } from "./cli-client.ts";
import { registerAdminCommands } from "./admin-commands.ts";
import { registerAccountsCommands } from "./accounts-commands.ts";
import { registerAccountExport } from "./accounts-export.ts";
import { registerProxiesCommands } from "./proxies-commands.ts";
import { registerRegistrationsCommands } from "./registrations-commands.ts";
import { registerSmsCommands } from "./sms-commands.ts";
import { registerDemoCommand } from "./demo-command.ts";
import { registerImportCommands } from "./import-commands.ts";
import { registerRegisterCommand } from "./register-command.ts";
import { registerSandboxCommand } from "./sandbox-command.ts";
import { registerWarmCommands } from "./warm-command.ts";
import { registerStoreCommands } from "./store-commands.ts";
import { startTracingSdk } from "../telemetry/sdk.ts";
import { INTERNAL, inSpan, traceMixin } from "../telemetry/tracing.ts";

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
    .option("--ca <file>", "CA certificate (PEM) to trust for a TLS server; default: CONVEER_CA")
    .option("--cert <file>", "client certificate (PEM) for a server that requires one (mTLS); default: CONVEER_CLIENT_CERT")
    .option("--key <file>", "the client certificate's private key (PEM); default: CONVEER_CLIENT_KEY");
  const cliConfig = () => withCliOptions(getConfig(), program.opts<CliOptions>());
  program.hook("preAction", () => {
    const o = program.opts<CliOptions>();
    if (Boolean(o.cert) !== Boolean(o.key)) program.error("error: --cert and --key go together (the client certificate and its private key, PEM files); give both or neither", { exitCode: 2 });
  });

  program
    .command("start")
    .description("start the services (all by default) on their ports, the store, and the HTTP port")
    .option("--services <list>", `comma-separated subset of ${SERVICE_NAMES.join(",")}`, parseServices)
    .action(async (opts: { services?: ServiceName[] }) => {
      const config = getConfig();
      const release = config.databaseUrl ? async () => {} : await holdDataDirLock(config.dataDir);
      const log = createLogger(config, { mixin: config.tracing.enabled ? traceMixin : undefined });
      // Before startApp, so every part it builds sees the tracer provider (none without OTEL_*: the SDK is not even loaded).
      const tracing = await startTracingSdk(config, log);
      // The signals are heard from the start: one that comes while the services start up stops
      // them once they are up (the default action would kill the process mid-start, the store
      // unclosed). A second signal takes the default action: a stop that hangs can be cut short.
      let signalled: string | undefined;
      let stop = (signal: string) => void (signalled = signal);
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
      let app;
      try {
        app = await startApp({ config, services: opts.services, log });
      } catch (err) {
        await tracing?.shutdown();
        await release();
        throw err;
      }
      const started = app;
      stop = (signal: string) => {
        log.info({ signal }, "stopping: draining in-flight calls");
        const hard = setTimeout(() => process.exit(1), 15_000);
        hard.unref();
        started.stop(5000).then(
          async () => {
            // Exports the spans still buffered.
            await tracing?.shutdown();
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
      if (signalled) stop(signalled);
    });

  registerAdminCommands(program, cliConfig);
  registerAccountsCommands(program, cliConfig);
  registerAccountExport(program, cliConfig);
  registerDemoCommand(program);
  registerImportCommands(program, cliConfig);
  registerProxiesCommands(program, cliConfig);
  registerRegistrationsCommands(program, cliConfig);
  registerSmsCommands(program, cliConfig);
  registerRegisterCommand(program, cliConfig);
  registerSandboxCommand(program, cliConfig);
  registerWarmCommands(program, cliConfig);
  registerStoreCommands(program, getConfig);
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
  runTraced(argv, () => buildCli().parseAsync(argv))
    .catch((err: Error) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
      process.stderr.write(`conveer: ${err.message}\n`);
      process.exit(1);
    });
}

/**
 * A client command (not `start`, whose server traces calls itself, nor `sandbox`) with OTEL_* set:
 * the SDK runs for the command, which is one trace (`conveer warm list`, …) holding a client span
 * per call it makes; the spans are exported before the command returns.
 */
async function runTraced(argv: string[], run: () => Promise<unknown>): Promise<unknown> {
  // The command's words: arguments that are neither options nor the value of a global option.
  const words = argv.slice(2).filter((a, i, all) => !a.startsWith("-") && !(i > 0 && (all[i - 1] === "--server" || all[i - 1] === "--ca")));
  let config: Config;
  try {
    config = loadConfig();
  } catch {
    return run(); // the command reports a bad variable itself
  }
  if (!config.tracing.enabled || words.length === 0 || words[0] === "start" || words[0] === "sandbox") return run();
  const sdk = await startTracingSdk(config, createLogger({ ...config, logLevel: "warn" }));
  try {
    return await inSpan(`conveer ${words[0]}`, { kind: INTERNAL }, run);
  } finally {
    await sdk?.shutdown();
  }
}

if (import.meta.main) runCli();
