import { resolve } from "node:path";

/**
 * Every environment variable Conveer reads, validated once. The rest of the code receives the
 * frozen `Config`; a wrong value stops start-up with a message naming the variable and the fix.
 */

/** The eight services of the seed, in port order. */
export const SERVICE_NAMES = ["account", "proxy", "warming", "sms", "vk", "telegram", "mail", "max"] as const;
/** A service's short name, as `--services` takes it. */
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Each service's documented port and address variable. */
export const SERVICE_PORTS: Record<ServiceName, { port: number; env: string }> = {
  account: { port: 50051, env: "ACCOUNT_SERVICE_GRPC_ADDR" },
  proxy: { port: 50052, env: "PROXY_SERVICE_GRPC_ADDR" },
  warming: { port: 50053, env: "WARMING_SERVICE_GRPC_ADDR" },
  sms: { port: 50054, env: "SMS_SERVICE_GRPC_ADDR" },
  vk: { port: 50055, env: "VK_SERVICE_GRPC_ADDR" },
  telegram: { port: 50056, env: "TELEGRAM_SERVICE_GRPC_ADDR" },
  mail: { port: 50057, env: "MAIL_SERVICE_GRPC_ADDR" },
  max: { port: 50058, env: "MAX_SERVICE_GRPC_ADDR" },
};

/** The validated configuration. */
export type Config = Readonly<{
  /** host:port per service. */
  addrs: Readonly<Record<ServiceName, string>>;
  httpAddr: string;
  /** CONVEER_HTTP_CORS_ORIGINS: origins ("https://console.example:8443") a browser page may call the HTTP port from; empty: none. */
  httpCorsOrigins: readonly string[];
  dataDir: string;
  /** Empty: the embedded PGlite store in dataDir. */
  databaseUrl: string;
  /** How the PostgreSQL store treats slow, lost and busy connections (ignored by the embedded store). */
  db: Readonly<{
    poolSize: number;
    connectTimeoutMs: number;
    queryTimeoutMs: number;
    /** The longest wait for a pooled connection by work without a deadline of its own. */
    poolWaitMs: number;
  }>;
  /** Empty: a key file in dataDir (created 0600). */
  masterKey: string;
  /** CONVEER_MASTER_KEY_PREVIOUS: a key data keys may still be wrapped by during a master key rotation (unwraps only); empty: none. */
  masterKeyPrevious: string;
  /** CONVEER_NEW_MASTER_KEY: the key `conveer keys rotate-master` re-wraps the data keys under (one way to give it); empty: none. */
  newMasterKey: string;
  tlsCert: string;
  tlsKey: string;
  /** CONVEER_TLS_CLIENT_CA: a CA (PEM file); when set, every gRPC port and the HTTP port (all but /healthz) require a client certificate it signed (mTLS). */
  tlsClientCa: string;
  /** CONVEER_CLIENT_CERT / CONVEER_CLIENT_KEY: the certificate (PEM files) the CLI and peer clients present to an mTLS server; empty: none. */
  clientCert: string;
  clientKey: string;
  logLevel: string;
  /** CONVEER_LOG_FORMAT: "pretty" (for people; the default when stderr is a terminal) or "json" (one object a line; the default otherwise). */
  logFormat: "pretty" | "json";
  /** Bearer token the CLI and peer clients send. */
  token: string;
  /** Where the CLI sends its calls (CONVEER_SERVER: the HTTP port, Connect protocol); empty: each service's gRPC address. */
  server: string;
  /** A CA certificate (PEM file) the CLI and peer clients trust for a TLS server (CONVEER_CA); empty: the system's roots. */
  caFile: string;
  /**
   * CONVEER_AUTH: "open" (every call allowed; loopback only), "tokens" (never an anonymous call),
   * or "auto" (unset: open only while the store has never had a token and every port is loopback).
   */
  auth: AuthSetting;
  platforms: Readonly<{
    /** platform → driver name ("sandbox"), or absent when unbound (FAILED_PRECONDITION). */
    drivers: Readonly<Partial<Record<string, string>>>;
    codeTimeoutSeconds: number;
    registrationLeaseMs: number;
  }>;
  warming: Readonly<{
    /** Operator scenario files (*.yaml, *.yml, *.json); empty: built-ins only. */
    scenariosDir: string;
    /** 1 = real time; 1440 = a scenario day per real minute. */
    timeScale: number;
    /** CONVEER_CLOCK_OFFSET_MS: added to this host's clock as warming reads it (testing clock skew; 0 in production). */
    clockOffsetMs: number;
    /** CONVEER_WARMING_WORKER=0: serve the API, run no actions here. */
    worker: boolean;
    batchSize: number;
    concurrency: number;
    leaseMs: number;
    maxConsecutiveFailures: number;
    /** 0: keep warming events forever. */
    eventRetentionDays: number;
  }>;
  sandbox: Readonly<{
    /** An external sandbox (`conveer sandbox`); empty: Conveer starts one in-process. */
    url: string;
    /** Where the in-process or standalone sandbox listens. */
    addr: string;
    /** CONVEER_SANDBOX_TOKEN: the bearer its admin and SMS endpoints require; empty: none (in-process: a random one once tokens are on). */
    token: string;
  }>;
  proxy: Readonly<{
    /** CONVEER_PROXY_CHECK_TARGET; "": chosen at start (the sandbox's address, or example.com:80). */
    checkTarget: string;
    /** CONVEER_PROXY_CHECK_TARGETS: further targets CheckHealth may name. */
    checkTargets: readonly string[];
    /** CONVEER_PROXY_ALLOW_PRIVATE=true: proxies and check targets may be loopback, private or link-local (the proxy address policy). */
    allowPrivate: boolean;
    checkIntervalMs: number;
    checkTimeoutMs: number;
    failureThreshold: number;
    leaseMs: number;
  }>;
  /**
   * Traces (OpenTelemetry), read from the standard OTEL_* variables: on when OTEL_TRACES_EXPORTER
   * names an exporter other than none, or an OTLP endpoint is set, and OTEL_SDK_DISABLED is not
   * true. The SDK itself reads the rest (protocol, endpoint, headers, sampler, resource).
   */
  tracing: Readonly<{
    enabled: boolean;
    /** OTEL_TRACES_EXPORTER, "otlp" when unset: for the start-up log line. */
    exporter: string;
    /** "conveer" unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service. */
    defaultServiceName: string | undefined;
  }>;
}>;

/** The values of CONVEER_AUTH ("auto" when unset). */
export const AUTH_SETTINGS = ["auto", "open", "tokens"] as const;
/** How API calls are authenticated: see Config.auth. */
export type AuthSetting = (typeof AUTH_SETTINGS)[number];

/** Thrown for a bad environment variable; the message names it. */
export class ConfigError extends Error {}

/** Reads and validates the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const addrs = {} as Record<ServiceName, string>;
  for (const name of SERVICE_NAMES) {
    const { port, env: key } = SERVICE_PORTS[name];
    addrs[name] = hostPort(env, key, `127.0.0.1:${port}`);
  }
  const dataDir = resolve(env.CONVEER_DATA_DIR || ".conveer");
  const databaseUrl = env.DATABASE_URL ?? "";
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must start with postgres:// (e.g. postgres://user@127.0.0.1:5432/conveer), got ${JSON.stringify(databaseUrl)}; unset it to use the embedded store`);
  }
  const tlsCert = env.CONVEER_TLS_CERT ?? "";
  const tlsKey = env.CONVEER_TLS_KEY ?? "";
  if (Boolean(tlsCert) !== Boolean(tlsKey)) {
    throw new ConfigError("CONVEER_TLS_CERT and CONVEER_TLS_KEY must be set together (PEM file paths), or neither");
  }
  const tlsClientCa = env.CONVEER_TLS_CLIENT_CA ?? "";
  if (tlsClientCa && !tlsCert) {
    throw new ConfigError("CONVEER_TLS_CLIENT_CA (client certificates) needs TLS: set CONVEER_TLS_CERT and CONVEER_TLS_KEY too, or unset CONVEER_TLS_CLIENT_CA");
  }
  const clientCert = env.CONVEER_CLIENT_CERT ?? "";
  const clientKey = env.CONVEER_CLIENT_KEY ?? "";
  if (Boolean(clientCert) !== Boolean(clientKey)) {
    throw new ConfigError("CONVEER_CLIENT_CERT and CONVEER_CLIENT_KEY must be set together (PEM file paths of the client certificate and its key), or neither");
  }
  return Object.freeze({
    addrs: Object.freeze(addrs),
    httpAddr: hostPort(env, "CONVEER_HTTP_ADDR", "127.0.0.1:8080"),
    httpCorsOrigins: Object.freeze(origins(env, "CONVEER_HTTP_CORS_ORIGINS")),
    dataDir,
    databaseUrl,
    db: Object.freeze({
      poolSize: int(env, "CONVEER_DB_POOL_SIZE", 20, 1, 1000),
      connectTimeoutMs: int(env, "CONVEER_DB_CONNECT_TIMEOUT_MS", 2000, 100, 120_000),
      queryTimeoutMs: int(env, "CONVEER_DB_QUERY_TIMEOUT_MS", 10_000, 100, 3_600_000),
      poolWaitMs: int(env, "CONVEER_DB_POOL_WAIT_MS", 30_000, 100, 3_600_000),
    }),
    masterKey: env.CONVEER_MASTER_KEY ?? "",
    masterKeyPrevious: env.CONVEER_MASTER_KEY_PREVIOUS ?? "",
    newMasterKey: env.CONVEER_NEW_MASTER_KEY ?? "",
    tlsCert,
    tlsKey,
    tlsClientCa,
    clientCert,
    clientKey,
    logLevel: oneOf(env, "CONVEER_LOG_LEVEL", ["trace", "debug", "info", "warn", "error", "silent"], "info"),
    logFormat: oneOf(env, "CONVEER_LOG_FORMAT", ["pretty", "json"], process.stderr.isTTY ? "pretty" : "json") as "pretty" | "json",
    token: env.CONVEER_TOKEN ?? "",
    server: url(env, "CONVEER_SERVER"),
    caFile: env.CONVEER_CA ?? "",
    auth: oneOf(env, "CONVEER_AUTH", [...AUTH_SETTINGS], "auto") as AuthSetting,
    platforms: Object.freeze({
      drivers: Object.freeze(drivers(env)),
      codeTimeoutSeconds: int(env, "CONVEER_REGISTRATION_CODE_TIMEOUT_S", 120, 1, 600),
      registrationLeaseMs: int(env, "CONVEER_REGISTRATION_LEASE_MS", 30_000, 300, 3_600_000),
    }),
    warming: Object.freeze({
      scenariosDir: env.CONVEER_SCENARIOS_DIR ? resolve(env.CONVEER_SCENARIOS_DIR) : "",
      timeScale: timeScale(env),
      clockOffsetMs: int(env, "CONVEER_CLOCK_OFFSET_MS", 0, -86_400_000, 86_400_000),
      worker: oneOf(env, "CONVEER_WARMING_WORKER", ["1", "0"], "1") === "1",
      // The same defaults as the worker's own (WORKER_DEFAULTS in src/warming/worker.ts).
      batchSize: int(env, "CONVEER_WARMING_BATCH_SIZE", 128, 1, 1000),
      concurrency: int(env, "CONVEER_WARMING_CONCURRENCY", 256, 1, 10_000),
      leaseMs: int(env, "CONVEER_WARMING_LEASE_MS", 60_000, 500, 3_600_000),
      maxConsecutiveFailures: int(env, "CONVEER_WARMING_MAX_FAILURES", 5, 1, 1000),
      eventRetentionDays: int(env, "CONVEER_WARMING_EVENTS_RETENTION_DAYS", 30, 0, 3650),
    }),
    sandbox: Object.freeze({
      url: url(env, "CONVEER_SANDBOX_URL"),
      addr: hostPort(env, "CONVEER_SANDBOX_ADDR", "127.0.0.1:0"),
      token: sandboxToken(env),
    }),
    proxy: Object.freeze({
      checkTarget: env.CONVEER_PROXY_CHECK_TARGET ? hostPort(env, "CONVEER_PROXY_CHECK_TARGET", "example.com:80") : "",
      checkTargets: Object.freeze(hostPortList(env, "CONVEER_PROXY_CHECK_TARGETS", "example.com:80,127.0.0.1:8090")),
      allowPrivate: oneOf(env, "CONVEER_PROXY_ALLOW_PRIVATE", ["true", "false"], "false") === "true",
      checkIntervalMs: int(env, "CONVEER_PROXY_CHECK_INTERVAL_MS", 60_000, 100, 86_400_000),
      checkTimeoutMs: int(env, "CONVEER_PROXY_CHECK_TIMEOUT_MS", 5_000, 50, 120_000),
      failureThreshold: int(env, "CONVEER_PROXY_FAILURE_THRESHOLD", 3, 1, 100),
      leaseMs: int(env, "CONVEER_PROXY_LEASE_MS", 24 * 3_600_000, 1_000, 365 * 86_400_000),
    }),
    tracing: tracingFromEnv(env),
  });
}

/** Config.tracing from the OTEL_* variables (see there). */
export function tracingFromEnv(env: NodeJS.ProcessEnv): Config["tracing"] {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const endpoint = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  const disabled = (env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true";
  const enabled = !disabled && (exporters.length > 0 ? exporters.some((e) => e !== "none") : endpoint);
  const named = Boolean(env.OTEL_SERVICE_NAME) || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? "");
  return Object.freeze({ enabled, exporter: exporters.join(",") || "otlp", defaultServiceName: named ? undefined : "conveer" });
}

/** Splits "host:port" (IPv6 in brackets); port 0 asks the OS for a free one. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  if (!m) throw new ConfigError(`${JSON.stringify(addr)} is not host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}

/** True when every address is a loopback one (the only place an open, token-less server may listen). */
export function isLoopback(host: string): boolean {
  // An IPv4 literal in 127.0.0.0/8, not any name that merely starts with "127." (127.0.0.1.nip.io resolves anywhere).
  return host === "localhost" || host === "::1" || /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(host);
}

function hostPort(env: NodeJS.ProcessEnv, key: string, def: string): string {
  const v = env[key] || def;
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) {
    throw new ConfigError(`${key} must be host:port (e.g. ${def}), got ${JSON.stringify(v)}`);
  }
  return v;
}

function origins(env: NodeJS.ProcessEnv, key: string): string[] {
  const items = (env[key] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const v of items) {
    let ok = false;
    try {
      const u = new URL(v);
      ok = (u.protocol === "http:" || u.protocol === "https:") && u.origin === v;
    } catch {
      // not a URL
    }
    if (!ok) throw new ConfigError(`${key} must be a comma-separated list of origins (scheme://host[:port], no path or trailing slash, e.g. https://console.example.com), got ${JSON.stringify(v)}`);
  }
  return items;
}

function hostPortList(env: NodeJS.ProcessEnv, key: string, example: string): string[] {
  const items = (env[key] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const v of items) {
    const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(v);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new ConfigError(`${key} must be a comma-separated list of host:port (e.g. ${example}), got ${JSON.stringify(v)}`);
  }
  return items;
}

const PLATFORM_NAMES = ["vk", "telegram", "mail", "max"];
const DRIVER_NAMES = ["sandbox", "none"];

// "vk=sandbox,telegram=none": every platform defaults to the sandbox; "none" unbinds one.
function drivers(env: NodeJS.ProcessEnv): Partial<Record<string, string>> {
  const out: Record<string, string> = Object.fromEntries(PLATFORM_NAMES.map((p) => [p, "sandbox"]));
  for (const part of (env.CONVEER_PLATFORM_DRIVERS ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const [p, d] = part.split("=").map((s) => s?.trim());
    if (!PLATFORM_NAMES.includes(p) || !DRIVER_NAMES.includes(d ?? "")) {
      throw new ConfigError(`CONVEER_PLATFORM_DRIVERS must be a list like "vk=sandbox,max=none" (platforms ${PLATFORM_NAMES.join(", ")}; drivers ${DRIVER_NAMES.join(", ")}), got ${JSON.stringify(part)}`);
    }
    if (d === "none") delete out[p];
    else out[p] = d;
  }
  return out;
}

function timeScale(env: NodeJS.ProcessEnv): number {
  const v = env.CONVEER_TIME_SCALE;
  if (v === undefined || v.trim() === "") return 1;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 1_000_000) {
    throw new ConfigError(`CONVEER_TIME_SCALE must be a number above 0 and at most 1000000 (1 = real time, 1440 = a day per minute), got ${JSON.stringify(v)}`);
  }
  return n;
}

function sandboxToken(env: NodeJS.ProcessEnv): string {
  const v = env.CONVEER_SANDBOX_TOKEN ?? "";
  if (v && !/^[\x21-\x7e]{16,256}$/.test(v)) {
    throw new ConfigError("CONVEER_SANDBOX_TOKEN must be 16-256 visible ASCII characters (e.g. `openssl rand -hex 24`), or unset");
  }
  return v;
}

function url(env: NodeJS.ProcessEnv, key: string): string {
  const v = env[key] ?? "";
  if (v && !/^https?:\/\/[^/\s]+/.test(v)) throw new ConfigError(`${key} must be an http(s) URL like http://127.0.0.1:8090, got ${JSON.stringify(v)}`);
  return v.replace(/\/+$/, "");
}

function int(env: NodeJS.ProcessEnv, key: string, def: number, min: number, max: number): number {
  const v = env[key];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function oneOf(env: NodeJS.ProcessEnv, key: string, allowed: string[], def: string): string {
  const v = env[key] || def;
  if (!allowed.includes(v)) throw new ConfigError(`${key} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  return v;
}
