/**
 * The seed's Go client examples, unchanged, against the real server: test/go-client/main.go (built
 * by test/go-client/setup.sh from Debian's Go, protoc and grpc-go packages, offline) dials the
 * AccountService and ProxyService ports over plaintext HTTP/2 and runs GetCredentials,
 * AllocateProxy with the seed's proxyURL, the status.FromError error handling (ResourceExhausted,
 * NotFound) and the grpc_health_v1 check.
 *
 * Runs when Go and a built client are present (setup.sh is re-run first, so the client matches the
 * current .proto files), or always with CONVEER_GO_CLIENT=1 (setup.sh installs what is missing;
 * a failure then fails the test instead of skipping it).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import { rejectsWith } from "./support/grpc.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const run = promisify(execFile);
const DIR = fileURLToPath(new URL("./go-client/", import.meta.url));
const SETUP = `${DIR}setup.sh`;
const BINARY = `${DIR}.build/go-client`;
const FORCED = process.env.CONVEER_GO_CLIENT === "1";
const ABSENT = "507f1f77bcf86cd799439011"; // the seed's example id; no such account here

function skipReason(): string | false {
  if (FORCED) return false;
  const hint = "run `bash test/go-client/setup.sh` (Debian: golang-go, protobuf-compiler, protoc-gen-go, protoc-gen-go-grpc, golang-google-grpc-dev) or set CONVEER_GO_CLIENT=1";
  if (spawnSync("go", ["version"], { stdio: "ignore" }).status !== 0) return `no \`go\` on PATH; ${hint}`;
  if (!existsSync(BINARY)) return `Go client not built (${BINARY} missing); ${hint}`;
  return false;
}

const skip = skipReason();

describe("the seed's Go client examples against the real server", { skip }, () => {
  let sys: TestSystem;
  let accountId: string;
  let busyAccountId: string;

  before(
    async () => {
      // Always rebuild from the current .proto files (fast when cached; installs packages only if missing).
      await run("bash", [SETUP], { maxBuffer: 16 << 20 });
      sys = await startTestSystem("pglite", { env: { CONVEER_PROXY_CHECK_INTERVAL_MS: "3600000", CONVEER_PROXY_ALLOW_PRIVATE: "true" } });
      accountId = (await sys.accounts.createAccount({ platform: "vk", login: "go-seed-user", password: "s3cret-pw", phone: "+79990001122" })).id;
      busyAccountId = (await sys.accounts.createAccount({ platform: "vk", login: "go-seed-second", password: "other-pw" })).id;
      const added = await sys.proxies.addProxies({ proxies: [{ url: "http://user:pass@127.0.0.1:3128", country: "RU" }] });
      assert.equal(added.added, 1, JSON.stringify(added.results));
    },
    { timeout: 15 * 60_000 },
  );
  after(() => sys?.stop());

  test("GetCredentials, AllocateProxy + proxyURL, ResourceExhausted, NotFound and health SERVING", async () => {
    const args = ["-account-addr", sys.addr("account"), "-proxy-addr", sys.addr("proxy"), "-account-id", accountId, "-busy-account-id", busyAccountId, "-unknown-account-id", ABSENT];
    let stdout: string;
    try {
      ({ stdout } = await run(BINARY, args, { timeout: 60_000 }));
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      assert.fail(`go-client exited ${err.code}:\n${err.stdout}\n${err.stderr}`);
    }
    const lines = stdout.trim().split("\n");
    // The status messages are the server's wording; only their gist is checked.
    assert.match(lines[4] ?? "", new RegExp(`^AllocateProxy\\(${busyAccountId}\\): ResourceExhausted as expected: .*no free`), stdout);
    assert.match(lines[6] ?? "", new RegExp(`^AllocateProxy\\(${ABSENT}\\): NotFound as expected: .*${ABSENT}.*not found`), stdout);
    lines[4] = "<ResourceExhausted line>";
    lines[6] = "<NotFound line>";
    assert.deepEqual(lines, [
      "Login: go-seed-user, Password: s3cret-pw",
      "Phone: +79990001122",
      "Proxy URL: http://user:pass@127.0.0.1:3128",
      "No available proxies",
      "<ResourceExhausted line>",
      "Account not found",
      "<NotFound line>",
      "Health conveer.ProxyService: SERVING",
      "Health conveer.AccountService: SERVING",
      "GO CLIENT OK",
    ]);
    // The server agrees: the first account holds the proxy, the second holds none.
    assert.equal((await sys.proxies.getProxyForAccount({ accountId })).host, "127.0.0.1");
    await rejectsWith(sys.proxies.getProxyForAccount({ accountId: busyAccountId }), Code.NotFound);
  });
});
