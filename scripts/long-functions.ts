/**
 * Lists the functions in src/ (generated code and tests aside) that span more than a limit of
 * lines, counting the functions nested inside them: `node scripts/long-functions.ts [limit]`.
 * Exits 1 when any does, so it can guard the structure the code base keeps (CONVENTIONS.md).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

const limit = Number(process.argv[2] ?? 130);
const root = new URL("../src/", import.meta.url).pathname;

function* files(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "gen") yield* files(p);
    } else if (p.endsWith(".ts") && !p.endsWith(".test.ts")) yield p;
  }
}

const long: { where: string; name: string; lines: number }[] = [];
for (const file of files(root)) {
  const src = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const visit = (node: ts.Node, inside: boolean) => {
    const isFn = ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isArrowFunction(node) || ts.isMethodDeclaration(node);
    if (isFn && !inside) {
      const start = src.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      const end = src.getLineAndCharacterOfPosition(node.getEnd()).line + 1;
      const lines = end - start + 1;
      if (lines > limit) {
        const name = (node as ts.FunctionDeclaration).name?.getText() ?? (ts.isVariableDeclaration(node.parent) ? node.parent.name.getText() : "(anonymous)");
        long.push({ where: `${relative(process.cwd(), file)}:${start}`, name, lines });
      }
    }
    // Only outermost functions count: a nested one's lines are already its parent's.
    ts.forEachChild(node, (c) => visit(c, inside || isFn));
  };
  visit(src, false);
}
long.sort((a, b) => b.lines - a.lines);
for (const f of long) console.log(`${String(f.lines).padStart(4)}  ${f.name}  ${f.where}`);
console.log(long.length ? `${long.length} functions longer than ${limit} lines` : `no function longer than ${limit} lines`);
process.exitCode = long.length ? 1 : 0;
