/**
 * A real Prometheus (Debian's binary, a config written here, loopback only, its own data dir)
 * scraping a real `conveer start` with the alert rules loaded: after some traffic (registrations
 * that succeed and fail, warming, SMS, a NOT_FOUND), every Conveer metric is in Prometheus, every
 * metric the dashboard and the alerts read exists on /metrics, every dashboard query returns data
 * through the HTTP API, and every alert rule evaluates without error and, with its thresholds made
 * `bool`, returns data.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { Code } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { AccountService } from "../src/gen/conveer/v1/account_pb.js";
import { ProxyService } from "../src/gen/conveer/v1/proxy_pb.js";
import { VKService } from "../src/gen/conveer/v1/vk_pb.js";
import { WarmingService, WarmingStatus } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { killAll, runCli, systemEnv, waitHealthy } from "./support/cli.ts";
import type { Cli } from "./support/cli.ts";
import { eventually, freePort, rejectsWith } from "./support/grpc.ts";
import { startEchoTarget, startHttpConnectProxy } from "./support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "./support/local-proxies.ts";
import { metricFamilies, scrape } from "./support/metrics.ts";
import { ALERTS, NO_PROMETHEUS, alertExpressions, asPromQL, dashboardExpressions, metricsIn, prometheusBin, withBool } from "./support/prometheus.ts";

const SCENARIO = { id: "prom", name: "Prometheus test", totalDays: 1, days: [{ days: "1", window: { startHour: 0, endHour: 24 }, actions: { view_profile: 2, like_post: 1 } }] };

type ApiAnswer<T> = { status: string; data: T; error?: string };

describe("a real Prometheus scraping a real Conveer", { skip: NO_PROMETHEUS }, () => {
  let dir: string;
  let conveer: Cli;
  let http: number;
  let prom: ChildProcess | undefined;
  let promPort: number;
  let promLog = "";
  let echo: LocalTarget;
  const proxies: LocalProxy[] = [];
  const sessions: Http2SessionManager[] = [];

  const api = async <T>(path: string): Promise<ApiAnswer<T>> => (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/${path}`)).json()) as ApiAnswer<T>;
  const query = (expr: string) => api<{ resultType: string; result: unknown[] }>(`query?query=${encodeURIComponent(expr)}`);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "conveer-prom-"));
    await writeFile(join(dir, "prom.json"), JSON.stringify(SCENARIO));
    echo = await startEchoTarget();
    const sys = await systemEnv(join(dir, "conveer"), {
      CONVEER_MASTER_KEY: "44".repeat(32),
      CONVEER_PROXY_ALLOW_PRIVATE: "true",
      CONVEER_PROXY_CHECK_TARGET: `${echo.host}:${echo.port}`,
      CONVEER_REGISTRATION_CODE_TIMEOUT_S: "2",
      CONVEER_SCENARIOS_DIR: dir,
      CONVEER_TIME_SCALE: "86400",
      CONVEER_LOG_LEVEL: "warn",
    });
    http = sys.http;
    conveer = runCli(["start"], sys.env);
    await waitHealthy(conveer, http);

    promPort = await freePort();
    const config = {
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      rule_files: [ALERTS],
      scrape_configs: [{ job_name: "conveer", static_configs: [{ targets: [`127.0.0.1:${http}`] }] }],
    };
    await writeFile(join(dir, "prometheus.yml"), stringify(config));
    prom = spawn(join(prometheusBin()!, "prometheus"), [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "tsdb")}`, `--web.listen-address=127.0.0.1:${promPort}`, "--log.level=warn"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    prom.stdout!.on("data", (b: Buffer) => (promLog += b.toString()));
    prom.stderr!.on("data", (b: Buffer) => (promLog += b.toString()));
    await eventually(
      async () => {
        const t = await api<{ activeTargets: { health: string }[] }>("targets").catch(() => undefined);
        return t?.data.activeTargets[0]?.health === "up";
      },
      30_000,
      "Prometheus to scrape Conveer",
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${promLog.slice(-3000)}`);
    });

    // Traffic: a Register that fails (no proxy yet), proxies, one that succeeds, warming, a NOT_FOUND.
    const addr = (s: Parameters<typeof sys.addr>[0]) => ({ addr: sys.addr(s), sessions });
    const accounts = remoteClient(AccountService, addr("account"));
    const vk = remoteClient(VKService, addr("vk"));
    const warming = remoteClient(WarmingService, addr("warming"));
    assert.equal((await vk.register({ login: "prom_nopool" }, { timeoutMs: 30_000 })).failedStep, "allocate_proxy");
    proxies.push(await startHttpConnectProxy());
    await remoteClient(ProxyService, addr("proxy")).addProxies({ proxies: [{ url: proxies[0].url, capacity: 3 }] });
    const ok = await vk.register({ login: "prom_ok" }, { timeoutMs: 60_000 });
    assert.ok(ok.success, ok.error);
    const task = await warming.startWarming({ accountId: ok.accountId, scenarioId: "prom" });
    await eventually(async () => (await warming.getWarmingStatus({ taskId: task.id })).status === WarmingStatus.COMPLETED, 30_000, "the warming task to complete");
    await rejectsWith(accounts.getAccount({ accountId: "0123456789abcdef01234567" }), Code.NotFound);
  });

  after(async () => {
    for (const s of sessions) s.abort();
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom!.once("exit", r));
      prom.kill("SIGTERM");
      await exited;
    }
    if (conveer) await killAll([conveer]);
    await Promise.all(proxies.map((p) => p.close()));
    await echo?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("every Conveer metric on /metrics reaches Prometheus", async () => {
    const names = [...new Set((await scrape(http)).samples.map((s) => s.name).filter((n) => n.startsWith("conveer_")))];
    assert.ok(names.length >= 20, names.join(" "));
    await eventually(
      async () => {
        const stored = new Set((await api<string[]>("label/__name__/values")).data);
        return names.every((n) => stored.has(n));
      },
      15_000,
      "every series name in Prometheus",
    );
  });

  test("every metric the dashboard and the alerts read exists on /metrics", async () => {
    const families = metricFamilies((await scrape(http)).text);
    const exprs = [...dashboardExpressions().map((d) => ({ where: `panel ${d.panel}`, expr: d.expr })), ...alertExpressions().map((a) => ({ where: `alert ${a.alert}`, expr: a.expr }))];
    for (const { where, expr } of exprs) {
      const used = metricsIn(expr, families);
      assert.ok(used.length > 0, `${where} reads no Conveer metric`);
      for (const m of used) assert.ok(families.has(m), `${where} reads ${m}, which /metrics does not declare`);
    }
  });

  test("every dashboard query returns data through Prometheus's HTTP API, without error", async () => {
    const exprs = dashboardExpressions();
    let empty: string[] = [];
    await eventually(
      async () => {
        empty = [];
        for (const { panel, expr } of exprs) {
          const r = await query(asPromQL(expr));
          assert.equal(r.status, "success", `${panel}: ${expr}: ${r.error}`);
          if (r.data.result.length === 0) empty.push(`${panel}: ${expr}`);
        }
        return empty.length === 0;
      },
      30_000,
      "every dashboard query to return data",
    ).catch((err: Error) => {
      throw new Error(`${err.message}; empty:\n${empty.join("\n")}`);
    });
  });

  test("every alert rule is loaded and evaluates without error; none fires", async () => {
    for (const { alert, expr } of alertExpressions()) {
      const r = await query(expr);
      assert.equal(r.status, "success", `${alert}: ${r.error}`);
    }
    // Not firing, an alert's expression answers nothing; with its thresholds made `bool` it must
    // answer 0 or 1 for each: every series it reads is there.
    let empty: string[] = [];
    await eventually(
      async () => {
        empty = [];
        for (const { alert, expr } of alertExpressions()) {
          const r = await query(withBool(expr));
          assert.equal(r.status, "success", `${alert}: ${withBool(expr)}: ${r.error}`);
          if (r.data.result.length === 0) empty.push(`${alert}: ${withBool(expr)}`);
        }
        return empty.length === 0;
      },
      30_000,
      "every alert expression (thresholds as bool) to return data",
    ).catch((err: Error) => {
      throw new Error(`${err.message}; empty:\n${empty.join("\n")}`);
    });
    type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string; state: string };
    let rules: Rule[] = [];
    await eventually(
      async () => {
        rules = (await api<{ groups: { rules: Rule[] }[] }>("rules")).data.groups.flatMap((g) => g.rules);
        return rules.length === alertExpressions().length && rules.every((r) => !r.lastEvaluation.startsWith("0001"));
      },
      15_000,
      "every rule evaluated",
    );
    for (const r of rules) {
      assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
      // Nothing fires (each rule waits its `for`); the lag rule may be pending: at CONVEER_TIME_SCALE
      // 86400 a real second is a scenario day, and lag is measured in scenario time.
      assert.notEqual(r.state, "firing", r.name);
      if (r.name !== "ConveerWarmingLagHigh") assert.equal(r.state, "inactive", r.name);
    }
  });
});
