import { randomBytes } from "node:crypto";
import { mkdir, readFile, unlink } from "node:fs/promises";
import { createExclusive } from "../create-exclusive.ts";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

/**
 * The embedded store (PGlite) allows one process per data directory, and PGlite itself takes no
 * lock there. The holder is named in DATA_DIR/conveer.lock (pid, the process's start time, boot
 * id and host). The file appears whole or not at all (written aside, then hard-linked into place,
 * which fails if it exists), so of two starts exactly one wins. A lock whose holder has died (same
 * host, and the pid is gone or now belongs to a process started at another time) is broken under
 * a second lock of the same kind, so two starts cannot both break it and both win.
 */
export async function holdDataDirLock(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const me = selfHolder();
  const giveUpAt = Date.now() + 5000;
  while (!(await createLockFile(path, me))) {
    const other = await readHolder(path);
    if (other === "gone") continue;
    const state = liveness(other);
    if (state !== "dead") throw new DataDirLocked(lockedMessage(dataDir, path, other, state), state === "alive");
    await breakStale(path, other);
    if (Date.now() > giveUpAt) throw new Error(`could not take the lock ${path} (it keeps changing); is another conveer process starting on ${dataDir}?`);
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    // Only our own lock is removed (a lock file can never be someone else's while we live, but be sure).
    const cur = await readHolder(path).catch(() => "gone" as const);
    if (cur !== "gone" && cur.token === me.token) await unlink(path).catch(() => {});
  };
}

/** The data directory is held by another process; `alive`: one that runs on this host now (a server, most likely). */
export class DataDirLocked extends Error {
  readonly alive: boolean;
  constructor(message: string, alive: boolean) {
    super(message);
    this.alive = alive;
  }
}

/** The lock file's name inside the data directory. */
export const LOCK_FILE = "conveer.lock";

/** Who holds a lock: enough to tell later whether that very process still runs. */
type Holder = { pid: number; start: string; boot: string; host: string; token: string };

function selfHolder(): Holder {
  return { pid: process.pid, start: startTimeOf(process.pid), boot: bootId(), host: hostname(), token: randomBytes(12).toString("hex") };
}

/** Writes the holder aside and hard-links it into place: false when the lock file already exists. */
function createLockFile(path: string, holder: Holder): Promise<boolean> {
  return createExclusive(path, JSON.stringify(holder) + "\n", 0o644);
}

async function readHolder(path: string): Promise<Holder | "gone"> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw err;
  }
  try {
    const h = JSON.parse(text) as Holder;
    if (Number.isSafeInteger(h.pid) && h.pid > 0 && typeof h.start === "string" && typeof h.boot === "string" && typeof h.host === "string" && typeof h.token === "string") return h;
  } catch {
    // reported below
  }
  throw new Error(`the lock file ${path} is not one Conveer wrote; if no conveer process uses this data directory, delete it and start again`);
}

/**
 * Whether the holder still runs: "dead" only when that is certain (same host and boot, and the pid
 * is gone or belongs to a process started at another time); "elsewhere" when it cannot be known.
 */
function liveness(h: Holder): "alive" | "dead" | "elsewhere" {
  if (h.host !== hostname()) return "elsewhere";
  if (h.boot && bootId() && h.boot !== bootId()) return "dead";
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    // EPERM: a process of another user has this pid (alive, or at least not provably dead).
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return "dead";
  }
  // The pid runs; on Linux its start time tells a reused pid from the holder itself.
  const start = startTimeOf(h.pid);
  if (h.start && start && start !== h.start) return "dead";
  return "alive";
}

/**
 * Removes the lock file of a dead holder. Breakers serialize on `<lock>.break` (the same kind of
 * lock), and remove the lock only if it still names the dead holder, so a fresh lock taken by a
 * faster start is never removed.
 */
async function breakStale(path: string, dead: Holder): Promise<void> {
  const breaker = `${path}.break`;
  const me = selfHolder();
  if (!(await createLockFile(breaker, me))) {
    const other = await readHolder(breaker).catch(() => "gone" as const);
    // A breaker that died mid-break (the window is a few system calls) is itself stale.
    if (other !== "gone" && liveness(other) === "dead") await unlinkIfSame(breaker, other);
    await new Promise((r) => setTimeout(r, 20));
    return;
  }
  try {
    await unlinkIfSame(path, dead);
  } finally {
    await unlink(breaker).catch(() => {});
  }
}

async function unlinkIfSame(path: string, holder: Holder): Promise<void> {
  const cur = await readHolder(path).catch(() => "gone" as const);
  if (cur !== "gone" && cur.token === holder.token) await unlink(path).catch(() => {});
}

function lockedMessage(dataDir: string, path: string, h: Holder, state: "alive" | "elsewhere"): string {
  if (state === "alive") {
    return `another conveer process (pid ${h.pid}) is using the embedded store in ${dataDir}; stop it first, or set DATABASE_URL to share a PostgreSQL store`;
  }
  return (
    `another conveer process (pid ${h.pid} on host ${h.host}) holds the embedded store in ${dataDir} (lock file ${path}); ` +
    "this host cannot tell whether it still runs. Stop it first; if it no longer runs, delete the lock file and start again"
  );
}

// Linux: /proc/<pid>/stat field 22 is the start time in clock ticks since boot. "" elsewhere.
function startTimeOf(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}
