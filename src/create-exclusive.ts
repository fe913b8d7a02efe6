import { randomBytes } from "node:crypto";
import { link, open, unlink } from "node:fs/promises";

/**
 * Creates path holding content, atomically and only if it does not exist: written whole and
 * synced to a private temporary file, then hard-linked into place, so that of several processes
 * racing exactly one wins and no reader ever sees a half-written file. False when path exists.
 */
export async function createExclusive(path: string, content: string, mode: number): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(content, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}
