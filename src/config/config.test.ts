import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "./config.ts";

test("CONVEER_TIME_SCALE: unset is 1; a bad value is refused naming the variable", () => {
  assert.equal(loadConfig({}).warming.timeScale, 1);
  assert.equal(loadConfig({ CONVEER_TIME_SCALE: "" }).warming.timeScale, 1);
  assert.equal(loadConfig({ CONVEER_TIME_SCALE: "1440" }).warming.timeScale, 1440);
  assert.equal(loadConfig({ CONVEER_TIME_SCALE: "0.5" }).warming.timeScale, 0.5);
  for (const bad of ["0", "-1", "fast", "1e9"]) assert.throws(() => loadConfig({ CONVEER_TIME_SCALE: bad }), /CONVEER_TIME_SCALE must be a number/);
});

test("warming worker settings: defaults, overrides, and refusals that name the variable and its range", () => {
  const d = loadConfig({}).warming;
  assert.deepEqual([d.worker, d.batchSize, d.concurrency, d.leaseMs, d.maxConsecutiveFailures], [true, 128, 256, 60_000, 5]);
  const o = loadConfig({ CONVEER_WARMING_WORKER: "0", CONVEER_WARMING_BATCH_SIZE: "200", CONVEER_WARMING_CONCURRENCY: "400", CONVEER_WARMING_LEASE_MS: "2000", CONVEER_WARMING_MAX_FAILURES: "9" }).warming;
  assert.deepEqual([o.worker, o.batchSize, o.concurrency, o.leaseMs, o.maxConsecutiveFailures], [false, 200, 400, 2000, 9]);
  assert.throws(() => loadConfig({ CONVEER_WARMING_WORKER: "no" }), /CONVEER_WARMING_WORKER/);
  assert.throws(() => loadConfig({ CONVEER_WARMING_BATCH_SIZE: "0" }), /CONVEER_WARMING_BATCH_SIZE must be an integer between 1 and 1000, got "0"/);
  assert.throws(() => loadConfig({ CONVEER_WARMING_LEASE_MS: "10" }), /CONVEER_WARMING_LEASE_MS must be an integer between 500/);
});

test("proxy address policy settings: off by default, strict values, targets as a host:port list", () => {
  const d = loadConfig({}).proxy;
  assert.deepEqual([d.allowPrivate, d.checkTarget, d.checkTargets], [false, "", []]);
  const o = loadConfig({ CONVEER_PROXY_ALLOW_PRIVATE: "true", CONVEER_PROXY_CHECK_TARGET: "example.org:443", CONVEER_PROXY_CHECK_TARGETS: " a.example:80, [2001:db8::1]:8080 " }).proxy;
  assert.deepEqual([o.allowPrivate, o.checkTarget, o.checkTargets], [true, "example.org:443", ["a.example:80", "[2001:db8::1]:8080"]]);
  assert.throws(() => loadConfig({ CONVEER_PROXY_ALLOW_PRIVATE: "yes" }), /CONVEER_PROXY_ALLOW_PRIVATE must be one of true, false/);
  assert.throws(() => loadConfig({ CONVEER_PROXY_CHECK_TARGETS: "example.com" }), /CONVEER_PROXY_CHECK_TARGETS must be a comma-separated list of host:port/);
  assert.throws(() => loadConfig({ CONVEER_PROXY_CHECK_TARGETS: "example.com:0" }), /CONVEER_PROXY_CHECK_TARGETS/);
});

test("CONVEER_HTTP_CORS_ORIGINS: none by default; a list of exact origins; anything else refused naming the variable", () => {
  assert.deepEqual(loadConfig({}).httpCorsOrigins, []);
  assert.deepEqual(loadConfig({ CONVEER_HTTP_CORS_ORIGINS: " https://a.example , http://localhost:3000" }).httpCorsOrigins, ["https://a.example", "http://localhost:3000"]);
  for (const bad of ["*", "a.example", "https://a.example/", "https://a.example/path", "ftp://a.example", "null"]) {
    assert.throws(() => loadConfig({ CONVEER_HTTP_CORS_ORIGINS: bad }), /CONVEER_HTTP_CORS_ORIGINS must be a comma-separated list of origins/, bad);
  }
});
