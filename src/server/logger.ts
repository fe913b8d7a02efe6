import { pino } from "pino";
import type { Logger } from "pino";
import pretty from "pino-pretty";
import type { Config } from "../config/config.ts";

/** What a logger adds to every line: fixed fields, and fields computed per line (the trace ids). */
export type LoggerOptions = { base?: Record<string, unknown>; mixin?: () => object };

/**
 * The process's logger, on stdout: one JSON object a line (CONVEER_LOG_FORMAT=json, the default
 * unless stderr is a terminal), or pino-pretty's coloured lines for people (pretty). Pretty lines
 * are written synchronously, so the last ones are not lost when the process exits.
 */
export function createLogger(config: Pick<Config, "logLevel" | "logFormat">, opts: LoggerOptions = {}): Logger {
  const options = { level: config.logLevel, base: { pid: process.pid, ...opts.base }, mixin: opts.mixin };
  if (config.logFormat !== "pretty") return pino(options);
  return pino(options, pretty({ sync: true, colorize: Boolean(process.stdout.isTTY), translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" }));
}
