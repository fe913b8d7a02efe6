/**
 * The real CLI as a child process (`node src/cli/main.ts ...`) for tests that need whole
 * processes: start-up on free ports, health, SIGTERM and SIGKILL.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { SERVICE_NAMES } from "../../src/config/config.ts";
import type { ServiceName } from "../../src/config/config.ts";
import { eventually, freePort } from "./grpc.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** A running (or finished) CLI process with its output. */
export type Cli = {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Log lines (pino JSON) printed so far, parsed. */
  logs: () => Record<string, unknown>[];
  /** True until the process has exited. */
  running: () => boolean;
};

/**
 * Runs `conveer ARGS` with `env` on top of this process's environment minus every Conveer variable.
 * `entry` is the program and its leading arguments: by default this Node running src/cli/main.ts
 * (the package test runs an installed package's bin instead).
 */
export function runCli(args: string[], env: Record<string, string>, entry: { argv: string[]; cwd: string } = { argv: [process.execPath, MAIN], cwd: ROOT }): Cli {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CONVEER_|DATABASE_URL$|.*_SERVICE_GRPC_ADDR$)/.test(k)));
  const [program, ...lead] = entry.argv;
  const proc = spawn(program, [...lead, ...args], { cwd: entry.cwd, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | string>((resolve) => proc.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    logs: () =>
      out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    running: () => proc.exitCode === null && proc.signalCode === null,
  };
}

/** Env for a whole system on fresh free ports: every service, the HTTP port, and `extra`. */
export async function systemEnv(
  dataDir: string,
  extra: Record<string, string> = {},
): Promise<{ env: Record<string, string>; ports: Record<ServiceName, number>; http: number; addr: (s: ServiceName) => string }> {
  const env: Record<string, string> = {
    CONVEER_DATA_DIR: dataDir,
    CONVEER_LOG_LEVEL: "info",
    CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000",
    CONVEER_PROXY_CHECK_TIMEOUT_MS: "2500",
    ...extra,
  };
  const ports = {} as Record<ServiceName, number>;
  for (const s of SERVICE_NAMES) {
    ports[s] = await freePort();
    env[`${s.toUpperCase()}_SERVICE_GRPC_ADDR`] = `127.0.0.1:${ports[s]}`;
  }
  const http = await freePort();
  env.CONVEER_HTTP_ADDR = `127.0.0.1:${http}`;
  return { env, ports, http, addr: (s) => `127.0.0.1:${ports[s]}` };
}

/** Waits until /healthz answers 200; fails with the output as soon as the process exits, or once `ms` pass. */
export async function waitHealthy(cli: Cli, http: number, ms = 45_000): Promise<void> {
  let dead: number | string | undefined;
  void cli.exited.then((c) => (dead = c));
  const output = () => `\nstderr: ${cli.stderr()}\nstdout: ${cli.stdout().slice(-3000)}`;
  // A dead process ends the polling at once (`eventually` would swallow a thrown error and keep polling until `ms`).
  await eventually(async () => dead !== undefined || (await fetch(`http://127.0.0.1:${http}/healthz`)).status === 200, ms, "/healthz").catch((err: Error) => {
    throw new Error(`${err.message}${output()}`);
  });
  if (dead !== undefined) throw new Error(`conveer exited (${dead}) before it was healthy${output()}`);
}

/** Sends SIGTERM and returns the exit code and how long the process took to exit (gives up after `ms`, 15 s by default). */
export async function terminate(cli: Cli, ms = 15_000): Promise<{ code: number | string; ms: number }> {
  const t0 = performance.now();
  cli.proc.kill("SIGTERM");
  const code = await Promise.race([cli.exited, new Promise<string>((r) => setTimeout(() => r(`still running after ${ms / 1000} s`), ms).unref())]);
  return { code, ms: performance.now() - t0 };
}

/** SIGKILLs every process still running and waits for them to exit (test clean-up). */
export async function killAll(clis: readonly Cli[]): Promise<void> {
  for (const c of clis) if (c.running()) c.proc.kill("SIGKILL");
  await Promise.all(clis.map((c) => c.exited));
}
