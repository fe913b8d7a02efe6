/**
 * Debian's prometheus and promtool for tests (scripts/fetch-prometheus.sh unpacks them into
 * .cache/prometheus; CONVEER_PROMETHEUS_BIN names another folder), and the PromQL of deploy/.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ROOT } from "./cli.ts";

/** The folder holding prometheus and promtool, or undefined when they were not fetched. */
export function prometheusBin(): string | undefined {
  const dir = process.env.CONVEER_PROMETHEUS_BIN || join(ROOT, ".cache/prometheus/root/usr/bin");
  return existsSync(join(dir, "promtool")) && existsSync(join(dir, "prometheus")) ? dir : undefined;
}

/** Why a test needing the binaries is skipped (false: it runs). */
export const NO_PROMETHEUS = prometheusBin() ? false : "Debian's prometheus binaries are not fetched: run bash scripts/fetch-prometheus.sh (.ci/run does)";

export const DASHBOARD = join(ROOT, "deploy/grafana/conveer.json");
export const ALERTS = join(ROOT, "deploy/prometheus/alerts.yml");
export const ALERT_TESTS = join(ROOT, "deploy/prometheus/alerts.test.yml");

type Panel = { title?: string; targets?: { expr?: string }[]; panels?: Panel[] };

/** Every PromQL expression of the dashboard's panels, with the panel's title. */
export function dashboardExpressions(): { panel: string; expr: string }[] {
  const dash = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: Panel[] };
  const out: { panel: string; expr: string }[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? "", expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  return out;
}

/** Every alert rule's name and expression. */
export function alertExpressions(): { alert: string; expr: string }[] {
  const doc = parse(readFileSync(ALERTS, "utf8")) as { groups: { rules: { alert: string; expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ alert: r.alert, expr: r.expr })));
}

/**
 * An alert's expression with every threshold comparison (`X > 0.2`, `Y == 0`) made a `bool` one,
 * so it answers 0 or 1 instead of nothing while the alert does not fire: evaluated, it shows that
 * every series the rule reads is there. Only comparisons against a number literal are changed
 * (label matchers such as `code!="OK"` are followed by a string, never a number).
 */
export function withBool(expr: string): string {
  return expr.replace(/\s(==|!=|>=|<=|>|<)\s+(?=-?[0-9.])/g, (_, op: string) => ` ${op} bool `);
}

/** Grafana's variables replaced by what Prometheus can evaluate. */
export function asPromQL(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "5m").replaceAll("$__interval", "15s");
}

/** The Conveer metric families an expression reads (a histogram's _bucket/_count/_sum series named by their family). */
export function metricsIn(expr: string, families: ReadonlyMap<string, string>): string[] {
  return [...new Set([...expr.matchAll(/\bconveer_[a-z0-9_]+/g)].map((m) => {
    const base = m[0].replace(/_(bucket|count|sum)$/, "");
    return base !== m[0] && families.get(base) === "histogram" ? base : m[0];
  }))];
}
