import { join } from "node:path";
import type { Command } from "commander";
import { createLogger } from "../server/logger.ts";
import type { Config } from "../config/config.ts";
import { createSandbox } from "../sandbox/index.ts";

/**
 * `conveer sandbox`: the simulated platform (and its SMS side) as its own process, for replicas
 * to share through CONVEER_SANDBOX_URL. Its world is kept in DATA_DIR/sandbox.json. With
 * CONVEER_SANDBOX_TOKEN set, its admin and SMS endpoints require that token (Conveer sends the
 * same variable's value); without it, it listens on loopback only, and CONVEER_AUTH=tokens refuses to start.
 */
export function registerSandboxCommand(program: Command, getConfig: () => Config): void {
  program
    .command("sandbox")
    .description("run the sandbox platform (the only platform Conveer ships) as its own HTTP process")
    .option("--addr <host:port>", "where to listen", "127.0.0.1:8090")
    .action(async (o: { addr: string }) => {
      const config = getConfig();
      const log = createLogger(config, { base: { component: "sandbox" } });
      if (config.auth === "tokens" && !config.sandbox.token) {
        throw new Error("refusing to start: CONVEER_AUTH=tokens, so the sandbox's admin and SMS endpoints must need a token too; set CONVEER_SANDBOX_TOKEN (the same value for Conveer)");
      }
      const token = config.sandbox.token;
      const sandbox = createSandbox({ dataFile: join(config.dataDir, "sandbox.json"), log, access: token ? { token } : undefined });
      const { url } = await sandbox.listen(o.addr);
      const access = token ? "its admin and SMS endpoints need CONVEER_SANDBOX_TOKEN" : "no CONVEER_SANDBOX_TOKEN: its admin and SMS endpoints answer anyone on this machine";
      log.info({ url }, `sandbox listening (${access}); point Conveer at it with CONVEER_SANDBOX_URL=${url}`);
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
