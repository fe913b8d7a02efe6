import { chmodSync, mkdirSync, statSync } from "node:fs";
import type { Logger } from "pino";

/**
 * Makes the embedded store's directory 0700 (created so, or narrowed with a warning). PGlite
 * creates its files 0666 whatever the umask, so under the usual umask 022 (a 0755 directory)
 * any local user could read the store and write into it (an api_tokens row of their own),
 * outside systemd's UMask=0077. PostgreSQL refuses a data directory wider than 0750.
 */
export function keepPrivate(dir: string, log?: Logger): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  chmodSync(dir, 0o700);
  log?.warn({ dir, was: mode.toString(8) }, "the embedded store's directory was open to other users; narrowed to 0700");
}
