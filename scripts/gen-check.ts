// Fails when the committed generated code (src/gen) differs from what `buf generate` makes from proto/.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const out = mkdtempSync(join(tmpdir(), "conveer-gen-"));
const template = readFileSync(join(root, "buf.gen.yaml"), "utf8").replace("out: src/gen", `out: ${out}`);
const tmpl = join(tmpdir(), `buf.gen.check.${process.pid}.yaml`);
writeFileSync(tmpl, template);
try {
  execFileSync(join(root, "node_modules/.bin/buf"), ["generate", "--template", tmpl], { cwd: root, stdio: "inherit", env: { ...process.env, PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}` } });
  const list = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? list(join(dir, e.name)) : [join(dir, e.name)]));
  const fresh = list(out).map((f) => relative(out, f)).sort();
  const committed = list(join(root, "src/gen")).map((f) => relative(join(root, "src/gen"), f)).sort();
  const stale = [...new Set([...fresh, ...committed])].filter((f) => {
    try {
      return readFileSync(join(out, f), "utf8") !== readFileSync(join(root, "src/gen", f), "utf8");
    } catch {
      return true;
    }
  });
  if (stale.length) {
    console.error(`src/gen is stale (${stale.join(", ")}): run \`npm run gen\` and commit the result`);
    process.exit(1);
  }
  console.log("src/gen is up to date");
} finally {
  rmSync(out, { recursive: true, force: true });
  rmSync(tmpl, { force: true });
}
