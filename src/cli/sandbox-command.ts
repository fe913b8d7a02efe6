import { join } from "node:path";
import type { Command } from "commander";
import { pino } from "pino";
import type { Config } from "../config/config.ts";
import { createSandbox } from "../sandbox/index.ts";

/**
 * `conveer sandbox`: the simulated platform (and its SMS side) as its own process, for replicas
 * to share through CONVEER_SANDBOX_URL. Its world is kept in DATA_DIR/sandbox.json.
 */
export function registerSandboxCommand(program: Command, getConfig: () => Config): void {
  program
    .command("sandbox")
    .description("run the sandbox platform (the only platform Conveer ships) as its own HTTP process")
    .option("--addr <host:port>", "where to listen", "127.0.0.1:8090")
    .action(async (o: { addr: string }) => {
      const config = getConfig();
      const log = pino({ level: config.logLevel, base: { pid: process.pid, component: "sandbox" } });
      const sandbox = createSandbox({ dataFile: join(config.dataDir, "sandbox.json"), log });
      const { url } = await sandbox.listen(o.addr);
      log.info({ url }, `sandbox listening; point Conveer at it with CONVEER_SANDBOX_URL=${url}`);
      const stop = () => {
        sandbox.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
}
