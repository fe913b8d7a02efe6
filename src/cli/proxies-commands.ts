import type { Command } from "commander";
import type { Client } from "@connectrpc/connect";
import type { Config } from "../config/config.ts";
import { ProxyAllocationFilter, ProxyHealthFilter, ProxyHealthSchema, ProxySchema, ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { ProxyHealth } from "../gen/conveer/v1/proxy_pb.js";
import { messageOf } from "../errors.ts";
import { cliClient } from "./cli-client.ts";
import { collect, commandGroup, enumValue, intBetween, pages, timeText } from "./options.ts";
import { outputFormat, printMessages, printPages } from "./output.ts";
import type { OutputFormat } from "./output.ts";

/** The `proxies` group's help line. */
export const PROXIES_DESCRIPTION = "the proxy pool: list, add, remove, check and import";

type ListOptions = { health?: ProxyHealthFilter; tag: string; allocation?: ProxyAllocationFilter; country: string; provider: string; limit?: number; output: OutputFormat };

/** `conveer proxies list|add|remove|check` (import lives in import-commands.ts). Item failures exit 1. */
export function registerProxiesCommands(program: Command, getConfig: () => Config): void {
  const client = () => cliClient(ProxyService, "proxy", getConfig());
  const proxies = commandGroup(program, "proxies", PROXIES_DESCRIPTION);

  proxies
    .command("list")
    .description("list the pool (passwords never shown) with the accounts each proxy holds")
    .option("--health <which>", "HEALTHY or UNHEALTHY", enumValue(ProxyHealthFilter, "PROXY_HEALTH_FILTER_"))
    .option("--tag <tag>", "only proxies with this tag", "")
    .option("--allocation <which>", "ALLOCATED (holding an account) or FREE", enumValue(ProxyAllocationFilter, "PROXY_ALLOCATION_FILTER_"))
    .option("--country <cc>", "only this country", "")
    .option("--provider <name>", "only this provider", "")
    .option("--limit <n>", "at most this many proxies (default: every page)", intBetween(1, Number.MAX_SAFE_INTEGER))
    .option("--output <format>", "table, json (one proxy per line) or csv", outputFormat, "table")
    .action(async (o: ListOptions) => {
      await printPages(o.output, ProxySchema, proxyPages(client(), o), [
        ["id", (p) => p.id],
        ["url", (p) => `${p.protocol}://${p.username ? `${p.username}@` : ""}${p.host}:${p.port}`],
        ["country", (p) => p.country],
        ["provider", (p) => p.provider],
        ["tags", (p) => p.tags.join(";")],
        ["healthy", (p) => String(p.healthy)],
        ["failures", (p) => p.consecutiveFailures],
        ["allocated", (p) => `${p.allocated}/${p.capacity}`],
        ["accounts", (p) => p.accountIds.join(";")],
      ]);
    });

  proxies
    .command("add <url...>")
    .description("add proxies by URL (http://, https://, socks5://user:pass@host:port); each failure is printed, exit 1 if any")
    .option("--country <cc>", "their country", "")
    .option("--provider <name>", "their provider", "")
    .option("--tag <tag>", "a tag (repeat for more)", (v: string, prev: string[] = []) => [...prev, v], [])
    .option("--capacity <n>", "accounts each may hold (0: the server's default)", intBetween(0, 100_000), 0)
    .action(async (urls: string[], o: { country: string; provider: string; tag: string[]; capacity: number }) => {
      const r = await client().addProxies({ proxies: urls.map((url) => ({ url, country: o.country, provider: o.provider, tags: o.tag, capacity: o.capacity })) });
      for (const item of r.results) {
        if (item.error) process.stderr.write(`${redact(urls[item.index] ?? "")}: ${item.error}\n`);
        else process.stdout.write(`${item.proxyId}\n`);
      }
      process.stderr.write(`added ${r.added}, failed ${r.failed}\n`);
      if (r.failed > 0) process.exitCode = 1;
    });

  proxies
    .command("remove <id...>")
    .description("remove proxies; the accounts they held move to other proxies (or are released)")
    .action(async (ids: string[]) => {
      const c = client();
      let failed = 0;
      for (const id of ids) {
        try {
          const r = await c.removeProxy({ proxyId: id });
          process.stdout.write(`removed ${id}: ${r.accountsMoved} account(s) moved, ${r.accountsReleased} released\n`);
        } catch (err) {
          failed++;
          process.stderr.write(`${id}: ${messageOf(err)}\n`);
        }
      }
      if (failed > 0) process.exitCode = 1;
    });

  registerProxiesCheck(proxies, client);
}

/** `proxies check [id...]`: CheckHealth through each proxy (all of the pool when none is named); exit 1 when one failed or is unhealthy. */
function registerProxiesCheck(proxies: Command, client: () => Client<typeof ProxyService>): void {
  proxies
    .command("check [id...]")
    .description("check proxies now by connecting through them (all when none is named); exit 1 when any is unhealthy")
    .option("--target <host:port>", "what to reach through the proxy (one of the server's allowed targets); default the server's", "")
    .option("--output <format>", "table, json (one result per line) or csv", outputFormat, "table")
    .action(async (ids: string[], o: { target: string; output: OutputFormat }) => {
      const c = client();
      const todo = ids.length > 0 ? ids : (await collect(proxyPages(c, { tag: "", country: "", provider: "" }))).map((p) => p.id);
      const results: ProxyHealth[] = [];
      let bad = 0;
      for (const id of todo) {
        try {
          const h = await c.checkHealth({ proxyId: id, target: o.target });
          if (!h.healthy) bad++;
          results.push(h);
        } catch (err) {
          bad++;
          process.stderr.write(`${id}: ${messageOf(err)}\n`);
        }
      }
      printMessages(o.output, ProxyHealthSchema, results, [
        ["id", (h) => h.proxyId],
        ["healthy", (h) => String(h.healthy)],
        ["latency_ms", (h) => String(h.latencyMs)],
        ["target", (h) => h.target],
        ["failures", (h) => h.consecutiveFailures],
        ["checked", (h) => timeText(h.checkedAt)],
        ["error", (h) => h.error],
      ]);
      if (bad > 0) process.exitCode = 1;
    });
}

function proxyPages(client: Client<typeof ProxyService>, o: Omit<ListOptions, "output">) {
  return pages(
    async (pageToken, size) => {
      const r = await client.listProxies({ health: o.health, tag: o.tag, allocation: o.allocation, country: o.country, provider: o.provider, pageSize: size, pageToken });
      return { items: r.proxies, next: r.nextPageToken };
    },
    1000,
    o.limit,
  );
}

/** A proxy URL without its password, for messages. */
function redact(url: string): string {
  return url.replace(/^([a-z0-9]+:\/\/[^:/@]*):[^@/]*@/i, "$1:***@");
}
