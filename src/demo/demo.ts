import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { startApp } from "../app.ts";
import type { App } from "../app.ts";
import { loadConfig } from "../config/config.ts";
import type { Config } from "../config/config.ts";
import { AccountService, AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { MailService } from "../gen/conveer/v1/mail_pb.js";
import { MaxService } from "../gen/conveer/v1/max_pb.js";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { TelegramService } from "../gen/conveer/v1/telegram_pb.js";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { WarmingService } from "../gen/conveer/v1/warming_pb.js";
import { startLocalProxy } from "./local-proxy.ts";
import type { LocalProxy } from "./local-proxy.ts";

/** How the demo world is made: accounts registered per platform, proxies, tasks warming. */
export const DEMO_PLAN = { registrations: { vk: 12, telegram: 8, mail: 6, max: 4 }, proxies: 4, warming: 10, lostCodes: 2 } as const;

/** A running demo: the system, its local proxies, where the console is. */
export type Demo = { app: App; config: Config; consoleUrl: string; proxies: LocalProxy[]; seeded: Promise<void>; stop(): Promise<void> };

/**
 * The configuration of a demo: the caller's environment, plus a fresh data directory (unless
 * CONVEER_DATA_DIR is given), time 1440× faster (a scenario day per minute), local proxies
 * allowed (they are on loopback: the private-address policy is opened explicitly), a sandbox
 * token of its own (so the demo can set the sandbox's faults), and a 5 s SMS wait so a lost code
 * fails quickly.
 */
export function demoConfig(env: NodeJS.ProcessEnv): { config: Config; temporaryDir?: string } {
  // Without CONVEER_DATA_DIR (unset or empty) the data goes into a new temporary directory, the
  // one path the demo removes when it stops; a directory the operator named is never removed.
  const temporaryDir = env.CONVEER_DATA_DIR ? undefined : mkdtempSync(join(tmpdir(), "conveer-demo-"));
  try {
    const config = loadConfig({
      ...env,
      CONVEER_DATA_DIR: temporaryDir ?? env.CONVEER_DATA_DIR,
      CONVEER_TIME_SCALE: env.CONVEER_TIME_SCALE ?? "1440",
      CONVEER_PROXY_ALLOW_PRIVATE: "true",
      CONVEER_SANDBOX_TOKEN: env.CONVEER_SANDBOX_TOKEN ?? randomBytes(18).toString("base64url"),
      CONVEER_REGISTRATION_CODE_TIMEOUT_S: env.CONVEER_REGISTRATION_CODE_TIMEOUT_S ?? "5",
    });
    return { config, temporaryDir };
  } catch (err) {
    if (temporaryDir) rmSync(temporaryDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Starts the whole system with a living sandbox world: local proxies, about 30 accounts
 * registered through the conveyor, warming on some, a banned account and registrations whose
 * code never came. Seeding runs in the background (`seeded`); `say` reports each step.
 */
export async function startDemo(config: Config, log: Logger, say: (line: string) => void): Promise<Demo> {
  const proxies = await Promise.all(Array.from({ length: DEMO_PLAN.proxies }, () => startLocalProxy()));
  const app = await startApp({ config, log });
  const base = `http://127.0.0.1:${app.httpPort}`;
  const seeded = seed(base, app.sandboxUrl, config.sandbox.token, proxies, say);
  return {
    app,
    config,
    consoleUrl: `${base}/`,
    proxies,
    seeded,
    async stop() {
      await app.stop(5000);
      await Promise.all(proxies.map((p) => p.close()));
    },
  };
}

const SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;

async function seed(base: string, sandboxUrl: string, sandboxToken: string, proxies: LocalProxy[], say: (line: string) => void): Promise<void> {
  const transport = createConnectTransport({ baseUrl: base, httpVersion: "1.1" });
  const accounts = createClient(AccountService, transport);
  const warming = createClient(WarmingService, transport);
  const added = await createClient(ProxyService, transport).addProxies({ proxies: proxies.map((p, i) => ({ url: p.url, capacity: 10, country: i % 2 ? "DE" : "RU", provider: "demo-local", tags: ["demo"] })) });
  say(`proxies: ${added.added} local HTTP CONNECT proxies added (capacity 10 each)`);
  const ok: string[] = [];
  for (const [platform, n] of Object.entries(DEMO_PLAN.registrations) as [keyof typeof SERVICES, number][]) {
    const svc = createClient(SERVICES[platform], transport);
    const results = await Promise.all(Array.from({ length: n }, () => svc.register({})));
    for (const r of results) if (r.success) ok.push(r.accountId);
    say(`registered on the sandbox ${platform}: ${results.filter((r) => r.success).length} of ${n}`);
  }
  const started = await Promise.all(ok.slice(0, DEMO_PLAN.warming).map((accountId) => warming.startWarming({ accountId })));
  say(`warming: ${started.length} tasks on the default scenario (a scenario day per minute)`);
  const banned = ok[ok.length - 1];
  if (banned) await accounts.updateStatus({ accountId: banned, status: AccountStatus.BANNED, reason: "the platform banned it (demo)" });
  say("one account BANNED");
  // Codes the sandbox never sends: these registrations fail at wait_code.
  await sandboxFaults(sandboxUrl, sandboxToken, { codeLossRate: 1 });
  const lost = await Promise.all(Array.from({ length: DEMO_PLAN.lostCodes }, () => createClient(VKService, transport).register({})));
  await sandboxFaults(sandboxUrl, sandboxToken, { codeLossRate: 0 });
  say(`registrations whose code never came: ${lost.filter((r) => !r.success).length} failed at ${[...new Set(lost.map((r) => r.failedStep))].join(", ")}`);
}

async function sandboxFaults(url: string, token: string, faults: { codeLossRate: number }): Promise<void> {
  const current = (await (await fetch(`${url}/v1/admin/faults`, { headers: { authorization: `Bearer ${token}` } })).json()) as Record<string, unknown>;
  const r = await fetch(`${url}/v1/admin/faults`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ ...current, ...faults }) });
  if (!r.ok) throw new Error(`the sandbox refused its faults: ${r.status} ${await r.text()}`);
}
