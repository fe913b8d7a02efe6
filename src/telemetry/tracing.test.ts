import { test } from "node:test";
import assert from "node:assert/strict";
import { tracingFromEnv } from "../config/config.ts";
import { summarize } from "../store/traced-db.ts";
import { linksTo, traceMixin, tracingEnabled } from "./tracing.ts";

test("tracing is on only when OTEL_* asks for traces", () => {
  assert.equal(tracingFromEnv({}).enabled, false);
  assert.equal(tracingFromEnv({ OTEL_SERVICE_NAME: "x" }).enabled, false, "a service name alone exports nothing");
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "otlp" }).enabled, true);
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "none" }).enabled, false);
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }).enabled, false, "none wins over an endpoint");
  assert.equal(tracingFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }).enabled, true);
  assert.equal(tracingFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }).enabled, true);
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "otlp", OTEL_SDK_DISABLED: "true" }).enabled, false);
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "otlp" }).defaultServiceName, "conveer");
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "otlp", OTEL_SERVICE_NAME: "c1" }).defaultServiceName, undefined);
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: "otlp", OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod,service.name=c2" }).defaultServiceName, undefined);
});

test("a query's span name is its first keyword and table, never its values", () => {
  assert.equal(summarize("SELECT id, login FROM accounts WHERE id = $1"), "SELECT accounts");
  assert.equal(summarize("  INSERT INTO registrations (id) VALUES ($1)"), "INSERT registrations");
  assert.equal(summarize("UPDATE warming_tasks SET run_at = NULL WHERE id = $1"), "UPDATE warming_tasks");
  assert.equal(summarize("DELETE FROM proxy_allocations WHERE account_id = 'secret'"), "DELETE proxy_allocations");
  assert.equal(summarize("WITH c AS (SELECT id FROM warming_tasks) SELECT 1"), "WITH warming_tasks");
  assert.equal(summarize("BEGIN"), "BEGIN");
  assert.equal(summarize("SELECT 1"), "SELECT");
  assert.equal(summarize("VACUUM ANALYZE"), "QUERY");
});

test("a stored traceparent becomes a span link; a malformed one none", () => {
  assert.deepEqual(linksTo("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), [{ context: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1, isRemote: true } }]);
  assert.deepEqual(linksTo(""), []);
  assert.deepEqual(linksTo("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), [], "an all-zero trace id is invalid");
  assert.deepEqual(linksTo("garbage"), []);
});

test("without a tracer provider: tracing is off and log lines get no ids (a fresh object each time: pino merges into it)", () => {
  assert.equal(tracingEnabled(), false);
  const a = traceMixin();
  const b = traceMixin();
  assert.deepEqual(a, {});
  assert.notEqual(a, b);
  assert.ok(!Object.isFrozen(a));
});
