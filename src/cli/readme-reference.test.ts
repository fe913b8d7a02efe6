/**
 * The README's CLI reference names every command the CLI has, one row each (a row may name
 * several sub-commands as `pause\|resume`), and no command the CLI lacks: the table is read, the
 * commander program walked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { buildCli } from "./main.ts";

/** Every runnable command's path below `conveer` ("accounts list", "start", …). */
function commandPaths(c: Command, prefix: string[] = []): string[] {
  const subs = c.commands.filter((s) => s.name() !== "help");
  if (subs.length === 0) return [prefix.join(" ")];
  return subs.flatMap((s) => commandPaths(s, [...prefix, s.name()]));
}

/** The command paths the README's CLI reference table names, alternatives (`a\|b`) expanded. */
function readmePaths(): Set<string> {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("## CLI reference"), readme.indexOf("### TLS and client certificates"));
  const out = new Set<string>();
  for (const m of section.matchAll(/^\| `conveer ([^`]+)`/gm)) {
    let paths = [""];
    for (const word of m[1].split(" ")) {
      if (!/^[a-z][a-z-]*(\\\|[a-z-]+)*$/.test(word)) break;
      paths = paths.flatMap((p) => word.split("\\|").map((w) => (p ? `${p} ${w}` : w)));
    }
    for (const p of paths) if (p) out.add(p);
  }
  return out;
}

test("the README's CLI reference lists every command, and only those", () => {
  const cli = commandPaths(buildCli());
  const readme = readmePaths();
  assert.deepEqual(cli.filter((p) => !readme.has(p)), [], "commands missing from the README's CLI reference");
  assert.deepEqual([...readme].filter((p) => !cli.includes(p)), [], "README rows naming no command");
  assert.ok(cli.length > 30, `walked ${cli.length} commands`);
});

test("every option a README CLI reference row names exists on its command (global ones on conveer)", () => {
  const cli = buildCli();
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("## CLI reference"), readme.indexOf("### TLS and client certificates"));
  const global = cli.options.map((o) => o.long);
  const wrong: string[] = [];
  for (const m of section.matchAll(/^\| `conveer ([^`]+)`/gm)) {
    const words = m[1].split(" ");
    const [group, sub] = words;
    const parent = group.startsWith("--") ? cli : cli.commands.find((c) => c.name() === group);
    const commands = parent && parent !== cli && parent.commands.length > 0 && sub ? sub.split("\\|").map((s) => parent.commands.find((c) => c.name() === s)) : [parent];
    for (const flag of m[1].match(/--[a-z][a-z-]*/g) ?? []) {
      for (const c of commands) {
        if (!c || (!c.options.some((o) => o.long === flag) && !global.includes(flag))) wrong.push(`${m[1]}: ${flag}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});
