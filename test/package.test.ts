/**
 * The package round trip: `npm pack` (prepack runs the build), `npm install --omit=dev` of the
 * tarball into an empty folder, then the installed `conveer start` answers /healthz and a gRPC
 * call, and SIGTERM stops it with exit 0. The installed program runs on
 * `CONVEER_PACKAGE_NODE` when set (CI points it at the lowest Node that `engines` claims), else
 * on this Node. Slow (a build and an install): minutes on a busy machine.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { healthCheck, healthClient } from "./support/grpc.ts";
import { ROOT, killAll, runCli, systemEnv, terminate, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";

const run = promisify(execFile);
const node = process.env.CONVEER_PACKAGE_NODE || process.execPath;
const nodeVersion = execFileSync(node, ["--version"]).toString().trim();
// npm runs on this Node (npm scripts put node_modules/.bin first on PATH); the package on `node`.
const npmEnv = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` };

describe("the npm package (pack → install --omit=dev → start)", { timeout: 900_000 }, () => {
  let work: string;
  let app: string;
  const children: Cli[] = [];
  const sessions: Http2SessionManager[] = [];
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "conveer-package-"));
    app = join(work, "app");
    await mkdir(app);
  });
  after(async () => {
    for (const s of sessions) s.abort();
    await killAll(children);
    await rm(work, { recursive: true, force: true });
  });

  test("packs only the built JavaScript and the files it reads", { timeout: 600_000 }, async () => {
    await run("npm", ["pack", "--pack-destination", work], { cwd: ROOT, env: npmEnv, maxBuffer: 64 << 20 });
    const [tarball] = (await readdir(work)).filter((f) => /^conveer-.*\.tgz$/.test(f));
    assert.ok(tarball, "npm pack wrote no conveer-*.tgz");
    const { stdout } = await run("tar", ["-tzf", join(work, tarball)]);
    const files = stdout.split("\n").filter(Boolean);
    for (const f of ["package/bin/conveer.js", "package/dist/cli/main.js", "package/dist/store/migrations/001_foundation.sql", "package/dist/gen/conveer/v1/account_pb.js", "package/proto/conveer/v1/account.proto", "package/console/dist/index.html"]) {
      assert.ok(files.includes(f), `${f} missing from the package`);
    }
    const typescript = files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"));
    assert.deepEqual(typescript, [], "TypeScript sources in the package (Node does not strip types under node_modules)");
    assert.deepEqual(files.filter((f) => f.includes(".test.")), [], "tests in the package");

    await run("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", join(work, tarball)], { cwd: app, env: npmEnv, maxBuffer: 64 << 20 });
    const { stdout: version } = await run(node, [join(app, "node_modules/.bin/conveer"), "--version"]);
    assert.match(version.trim(), /^\d+\.\d+\.\d+/);
  });

  test(`the installed conveer starts on Node ${nodeVersion}, answers /healthz and gRPC, stops on SIGTERM`, { timeout: 300_000 }, async () => {
    const { env, ports, http } = await systemEnv(join(work, "data"), { CONVEER_MASTER_KEY: "22".repeat(32) });
    const cli = runCli(["start"], env, { argv: [node, join(app, "node_modules/.bin/conveer")], cwd: app });
    children.push(cli);
    await waitHealthy(cli, http, 120_000);
    const healthz = (await (await fetch(`http://127.0.0.1:${http}/healthz`)).json()) as { status: string };
    assert.equal(healthz.status, "SERVING");
    const page = await fetch(`http://127.0.0.1:${http}/`);
    assert.equal(page.status, 200, "the installed package serves the console at /");
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);

    const accounts = remoteClient(AccountService, { addr: `127.0.0.1:${ports.account}`, sessions });
    const created = await accounts.createAccount({ platform: "vk", login: "from-package", password: "pw" });
    assert.equal((await accounts.getAccount({ accountId: created.id })).login, "from-package");
    const h = healthClient(`127.0.0.1:${ports.warming}`);
    try {
      assert.equal(await healthCheck(h, "conveer.WarmingService"), "SERVING");
    } finally {
      h.close();
    }

    for (const s of sessions.splice(0)) s.abort();
    const { code } = await terminate(cli);
    assert.equal(code, 0, cli.stderr());
    assert.match(cli.stdout(), /"msg":"stopped"/);
  });
});
