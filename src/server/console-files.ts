import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

/**
 * The operator console's built files (`npm run build:console` writes them to console/dist), read
 * once into memory and served by the HTTP port at `/`: a file by its path, any other path without
 * a file extension gets index.html (the console's own routes, e.g. /accounts/ID), so a reload or a
 * shared link opens the same page. Nothing outside the folder can be named: only the files listed
 * at start are served.
 */
export type ConsoleFiles = {
  /** The answer for a GET/HEAD of `path`, or undefined when no file and no route matches. */
  lookup(path: string): ConsoleFile | undefined;
  /** False when the folder holds no index.html (the console was not built). */
  built: boolean;
};

/** One file to send: its body (and its gzip, when smaller) and headers. */
export type ConsoleFile = { body: Buffer; gzip?: Buffer; type: string; immutable: boolean };

/**
 * The console's Content-Security-Policy: scripts, styles, images and fonts only from this origin,
 * no inline script, API calls only to this origin, never framed.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** console/dist relative to this module: src/server/ here, dist/server/ in the package build. */
export const CONSOLE_DIR = fileURLToPath(new URL("../../console/dist/", import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Reads every file under `dir` (CONSOLE_DIR by default); an absent folder gives an unbuilt console. */
export function loadConsoleFiles(dir: string = CONSOLE_DIR): ConsoleFiles {
  const files = new Map<string, ConsoleFile>();
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (!p.endsWith(".map")) files.set("/" + relative(dir, p).split(sep).join("/"), fileOf(p));
    }
  };
  walk(dir);
  const index = files.get("/index.html");
  return {
    built: Boolean(index),
    lookup(path) {
      const file = files.get(path);
      if (file) return file;
      // A client route: no extension in its last segment.
      return index && !extname(path) ? index : undefined;
    },
  };
}

function fileOf(p: string): ConsoleFile {
  const body = readFileSync(p);
  const type = TYPES[extname(p)] ?? "application/octet-stream";
  const gz = /^(text|application\/json|image\/svg)/.test(type) && body.length > 1024 ? gzipSync(body) : undefined;
  // Vite names built assets by their content hash: they never change under one name.
  return { body, gzip: gz && gz.length < body.length ? gz : undefined, type, immutable: p.includes(`${sep}assets${sep}`) };
}

/** True for a path shaped like an RPC, /<package.Service>/<Method>: never the console's. */
export function isRpcPath(path: string): boolean {
  return /^\/[^/]*\.[^/]*\/[^/]+$/.test(path);
}
