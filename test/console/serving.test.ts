/**
 * How the HTTP port serves the console, in open mode: the Host check (DNS rebinding) covers the
 * console's pages too, and a checkout whose console was never built says how to build it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRpcPath, loadConsoleFiles } from "../../src/server/console-files.ts";
import { startTestSystem } from "../support/system.ts";
import type { TestSystem } from "../support/system.ts";

function get(port: number, path: string, host: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("console serving", () => {
  let sys: TestSystem;
  let port = 0;
  before(async () => {
    sys = await startTestSystem("pglite");
    port = sys.app.httpPort;
  });
  after(() => sys.stop());

  test("open mode: a console page for a loopback Host, 403 for any other name", async () => {
    const ok = await get(port, "/accounts", `127.0.0.1:${port}`);
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.type, /text\/html/);
    const rebound = await get(port, "/accounts", `evil.example:${port}`);
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /loopback host/);
  });

  test("files: a path with an extension and no file is 404, client routes get index.html, an unbuilt console says how to build it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "conveer-console-"));
    try {
      assert.equal(loadConsoleFiles(join(dir, "absent")).built, false);
      await mkdir(join(dir, "assets"));
      await writeFile(join(dir, "index.html"), "<!doctype html>");
      await writeFile(join(dir, "assets", "a-123.js"), "x");
      const files = loadConsoleFiles(dir);
      assert.equal(files.lookup("/warming/abc")?.type, "text/html; charset=utf-8");
      assert.equal(files.lookup("/assets/a-123.js")?.immutable, true);
      assert.equal(files.lookup("/index.html")?.immutable, false);
      // Only files listed at start are served: any other path is at most index.html.
      assert.equal(files.lookup("/assets/../../etc/passwd")?.body.toString(), "<!doctype html>");
      assert.equal(files.lookup("/x.png"), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("RPC-shaped paths are never the console's", () => {
    assert.equal(isRpcPath("/conveer.AccountService/ListAccounts"), true);
    assert.equal(isRpcPath("/grpc.health.v1.Health/Check"), true);
    assert.equal(isRpcPath("/accounts/0123"), false);
    assert.equal(isRpcPath("/assets/index-abc.js"), false);
    assert.equal(isRpcPath("/favicon.svg"), false);
  });
});
