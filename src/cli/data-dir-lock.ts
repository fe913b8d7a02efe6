import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * The embedded store (PGlite) allows one process per data directory. The server holds a pid
 * file there; commands that open the store directly refuse while that process lives.
 */
export async function holdDataDirLock(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, "conveer.pid");
  const other = await runningPid(dataDir);
  if (other && other !== process.pid) {
    throw new Error(`another conveer process (pid ${other}) is using the embedded store in ${dataDir}; stop it first, or set DATABASE_URL to share a PostgreSQL store`);
  }
  await mkdir(dataDir, { recursive: true });
  await writeFile(path, String(process.pid));
  return () => rm(path, { force: true });
}

/** The pid of a live process holding the data directory, or 0. */
export async function runningPid(dataDir: string): Promise<number> {
  try {
    const pid = Number((await readFile(join(dataDir, "conveer.pid"), "utf8")).trim());
    if (!pid) return 0;
    process.kill(pid, 0);
    return pid;
  } catch {
    return 0;
  }
}
