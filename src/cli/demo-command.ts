import { rm } from "node:fs/promises";
import type { Command } from "commander";
import { pino } from "pino";
import { DEMO_PLAN, demoConfig, startDemo } from "../demo/demo.ts";

/**
 * `conveer demo`: the whole system on a fresh data directory with a living sandbox world (see
 * src/demo/demo.ts), and the console's URL with what to try. Ctrl-C stops it.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("start the whole system on a fresh data directory with a sandbox world to look at in the console")
    .action(async () => {
      const { config, temporaryDir } = demoConfig(process.env);
      const removeTemporary = () => (temporaryDir ? rm(temporaryDir, { recursive: true, force: true }) : undefined);
      const log = pino({ level: process.env.CONVEER_LOG_LEVEL ?? "warn", base: { pid: process.pid } });
      const say = (line: string) => process.stdout.write(`${line}\n`);
      const demo = await startDemo(config, log, say).catch(async (err: unknown) => {
        await removeTemporary();
        throw err;
      });
      say(`Conveer demo: data in ${config.dataDir}${temporaryDir ? " (removed when the demo stops)" : ""}, time ${config.warming.timeScale}× faster`);
      say(`Open the console: ${demo.consoleUrl}`);
      say(`Seeding: ${DEMO_PLAN.proxies} proxies, ${Object.values(DEMO_PLAN.registrations).reduce((a, b) => a + b, 0)} registrations, ${DEMO_PLAN.warming} warming tasks…`);
      demo.seeded.then(
        () =>
          say(
            [
              "Ready. Things to try:",
              "  Overview: accounts by platform and status, warming actions per minute arriving live",
              "  Warming: progress bars moving (a scenario day per minute); pause, resume, stop",
              "  Accounts: filter by platform or status, open one, reveal its credentials, change its status",
              "  Registrations: the two that failed at wait_code; start a batch of your own",
              "Ctrl-C stops the demo.",
            ].join("\n"),
          ),
        (err: Error) => say(`seeding failed: ${err.message}`),
      );
      const stop = () =>
        void demo
          .stop()
          .then(removeTemporary)
          .then(() => process.exit(0), () => process.exit(1));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
