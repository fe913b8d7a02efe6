/**
 * deploy/: the alert rules pass `promtool check rules` and their unit tests (`promtool test
 * rules`, series that fire each alert and series that do not); every alert has a test of each
 * kind; every panel of the Grafana dashboard has a query. Reading the queries against a running
 * Conveer and a real Prometheus is test/prometheus.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { ALERTS, ALERT_TESTS, DASHBOARD, NO_PROMETHEUS, alertExpressions, dashboardExpressions, prometheusBin, withBool } from "./support/prometheus.ts";

const run = promisify(execFile);

test("promtool check rules: the alert rules are valid", { skip: NO_PROMETHEUS }, async () => {
  const { stdout } = await run(join(prometheusBin()!, "promtool"), ["check", "rules", ALERTS]);
  assert.match(stdout, new RegExp(`SUCCESS: ${alertExpressions().length} rules found`));
});

test("promtool test rules: every alert's unit tests pass", { skip: NO_PROMETHEUS }, async () => {
  const { stdout } = await run(join(prometheusBin()!, "promtool"), ["test", "rules", ALERT_TESTS]);
  assert.match(stdout, /SUCCESS/);
});

test("promtool check config: the example Prometheus configuration (with the rules beside it) is valid", { skip: NO_PROMETHEUS }, async () => {
  const { stdout } = await run(join(prometheusBin()!, "promtool"), ["check", "config", join(ALERTS, "../prometheus.yml")]);
  assert.match(stdout, /SUCCESS: .*prometheus\.yml is valid/);
  assert.match(stdout, new RegExp(`SUCCESS: ${alertExpressions().length} rules found`), "the example loads alerts.yml");
});

test("every alert's thresholds can be made bool (test/prometheus.test.ts evaluates them so), label matchers untouched", () => {
  assert.equal(withBool('sum(rate(a{code!="OK"}[5m])) / sum(rate(a[5m])) > 0.05 and sum(rate(a[5m])) > 0.1'), 'sum(rate(a{code!="OK"}[5m])) / sum(rate(a[5m])) > bool 0.05 and sum(rate(a[5m])) > bool 0.1');
  assert.equal(withBool("min(up) == 0"), "min(up) == bool 0");
  assert.equal(withBool('x{state=~"a|b"} >= 10'), 'x{state=~"a|b"} >= bool 10');
  for (const { alert, expr } of alertExpressions()) assert.match(withBool(expr), / bool \d/, `${alert}: no threshold found in ${expr}`);
});

test("every alert has runbook text, a unit test that fires it and one that does not", () => {
  const rules = parse(readFileSync(ALERTS, "utf8")) as { groups: { rules: { alert: string; annotations: Record<string, string> }[] }[] };
  const tests = parse(readFileSync(ALERT_TESTS, "utf8")) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] };
  const cases = tests.tests.flatMap((t) => t.alert_rule_test);
  const names = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));
  assert.deepEqual(names, ["ConveerStoreDown", "ConveerWarmingLagHigh", "ConveerProxyPoolNearlyExhausted", "ConveerSmsBalanceLow", "ConveerRegistrationFailureRatioHigh", "ConveerRpcErrorRatioHigh"]);
  for (const r of rules.groups.flatMap((g) => g.rules)) {
    assert.ok((r.annotations.runbook ?? "").length > 100, `${r.alert} has a runbook`);
    assert.ok(cases.some((c) => c.alertname === r.alert && c.exp_alerts.length > 0), `${r.alert}: a test that fires it`);
    assert.ok(cases.some((c) => c.alertname === r.alert && c.exp_alerts.length === 0), `${r.alert}: a test where it stays quiet`);
  }
});

test("the dashboard: every non-row panel queries Prometheus through the datasource variable", () => {
  const dash = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { uid: string; panels: { type: string; title: string; targets?: { expr: string }[]; datasource?: { uid: string } }[] };
  assert.equal(dash.uid, "conveer");
  const panels = dash.panels.filter((p) => p.type !== "row");
  assert.ok(panels.length >= 20);
  for (const p of panels) {
    assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
    assert.equal(p.datasource?.uid, "${datasource}", p.title);
  }
  const titles = dash.panels.filter((p) => p.type === "row").map((p) => p.title);
  assert.deepEqual(titles, ["Overview", "RPC", "Proxy pool", "Warming", "Registrations", "SMS"]);
  assert.ok(dashboardExpressions().length >= panels.length);
});
