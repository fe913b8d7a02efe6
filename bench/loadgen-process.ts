/** The parent's handle on a load generator child process (bench/loadgen.ts, or another script speaking the same IPC). */
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { LoadgenMessage } from "./loadgen.ts";

/** The load generator child process, with a request/response helper over IPC. */
export class Loadgen<M extends { type: string } = LoadgenMessage> {
  readonly child: ChildProcess;
  private waiting: ((m: { type: string } & Record<string, unknown>) => void) | undefined;
  private exited: Promise<void>;
  private constructor(child: ChildProcess) {
    this.child = child;
    child.on("message", (m: { type: string } & Record<string, unknown>) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(m);
    });
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }
  /** Forks `script` (a bench/ file name; default the gRPC load generator) and waits for its "ready". */
  static async start<M extends { type: string } = LoadgenMessage>(script = "./loadgen.ts"): Promise<Loadgen<M>> {
    // No inherited --cpu-prof etc.: profile the server side only.
    const child = fork(fileURLToPath(new URL(script, import.meta.url)), [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const lg = new Loadgen<M>(child);
    const ready = await lg.next();
    if (ready.type !== "ready") throw new Error(`load generator said ${JSON.stringify(ready)}`);
    return lg;
  }
  private next(): Promise<{ type: string } & Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`load generator exited (${code})`));
      this.child.once("exit", onExit);
      this.waiting = (m) => {
        this.child.off("exit", onExit);
        resolve(m);
      };
    });
  }
  async send(msg: M): Promise<{ type: string } & Record<string, unknown>> {
    const reply = this.next();
    this.child.send(msg);
    const m = await reply;
    if (m.type === "error") throw new Error(`load generator failed: ${String(m.message)}`);
    return m;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.disconnect();
      const t = setTimeout(() => this.child.kill("SIGKILL"), 3000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

