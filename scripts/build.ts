// `npm run build` (run by `prepack`): emits the JavaScript the package runs into dist/, which
// mirrors src/ at the same depth so module-relative URLs (../../package.json, ../../proto/,
// ./migrations/) resolve the same from either. tsc emits the TypeScript; every other file under
// src/ that the program reads at run time (generated .js/.d.ts, migrations .sql) is copied.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Files tsc does not emit but the program needs: anything but TypeScript sources and docs. */
function isRuntimeAsset(path: string): boolean {
  if (statSync(path).isDirectory() || path.endsWith(".d.ts")) return true;
  return !path.endsWith(".ts") && !path.endsWith(".md");
}

rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(`${root}node_modules/.bin/tsc`, ["-p", `${root}tsconfig.build.json`], { stdio: "inherit" });
cpSync(`${root}src`, `${root}dist`, { recursive: true, filter: isRuntimeAsset });
