import type { Logger } from "pino";
import type { Authenticator } from "../auth/tokens.ts";
import type { Db } from "../store/db.ts";
import type { Vault } from "../vault/vault.ts";

/** Dependencies of the admin domain. */
export type AdminDeps = {
  db: Db;
  vault: Vault;
  newId: () => string;
  log: Logger;
  /** Answers WhoAmI's `open` and hears of new tokens; absent for the CLI working on the store directly. */
  auth?: Pick<Authenticator, "isOpen" | "tokenCreated">;
  /** How long a RUNNING rotation may go without a heartbeat before it counts as dead (default 30 s). */
  rotationLeaseMs?: number;
  /** How often the process running a rotation refreshes its heartbeat (default 5 s). */
  rotationHeartbeatMs?: number;
};

/** Background work of this process (key rotations), each run stopped through its signal on stop(). */
export type BackgroundRuns = {
  run(id: string, fn: (signal: AbortSignal) => Promise<void>): void;
  /** Aborts every run and waits for them to end. */
  stop(): Promise<void>;
};

/** What the admin domain's module functions take first. */
export type AdminContext = Readonly<Omit<AdminDeps, "rotationLeaseMs" | "rotationHeartbeatMs"> & { rotationLeaseMs: number; rotationHeartbeatMs: number; rotations: BackgroundRuns }>;

/** The context of the admin domain, with its background runs. */
export function adminContext(deps: AdminDeps): AdminContext {
  return { ...deps, rotationLeaseMs: deps.rotationLeaseMs ?? 30_000, rotationHeartbeatMs: deps.rotationHeartbeatMs ?? 5000, rotations: backgroundRuns(deps.log) };
}

function backgroundRuns(log: Logger): BackgroundRuns {
  const ac = new AbortController();
  const running = new Map<string, Promise<void>>();
  return {
    run(id, fn) {
      // Started while stopping: it runs with its signal already aborted, so it ends at once (FAILED, with why).
      const p = fn(ac.signal)
        .catch((err) => log.error({ err: String(err), run: id }, "background run failed"))
        .finally(() => running.delete(id));
      running.set(id, p);
    },
    async stop() {
      ac.abort(new Error("stopping"));
      await Promise.all(running.values());
    },
  };
}
