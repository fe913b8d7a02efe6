#!/usr/bin/env node
// The `conveer` command. A checkout runs the TypeScript in src/ (Node strips the types); the
// installed package has no src/ and runs the JavaScript that `npm run build` emitted into dist/
// (Node does not strip types under node_modules).
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
const main = existsSync(source) ? source : new URL("../dist/cli/main.js", import.meta.url);
const { runCli } = await import(main.href);
runCli();
