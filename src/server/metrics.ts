import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** What a call came to, beyond its status code (see Metrics.observeCall). */
export type CallOutcome = "ok" | "failed" | "error";

/**
 * Prometheus metrics of one running system (a registry per instance: no module state). Every
 * Conveer metric is named here, so the README's Metrics section and the dashboards have one place
 * to check against. Counters count what this process did (sum them across replicas); gauges that
 * read the store (addStoreGauge) read the same on every replica (take max across replicas).
 */
export type Metrics = {
  registry: Registry;
  /**
   * Counts one finished call by its gRPC code, and by its outcome: "ok", "error" (a status other
   * than OK), or "failed" (OK, but the response says success=false, as a failed Register does).
   * The outcome defaults from the code.
   */
  observeCall(service: string, method: string, code: string, seconds: number, outcome?: CallOutcome): void;
  /** One store query (operation: a short name such as "select accounts", never the SQL) took `seconds`. */
  storeQuery(operation: string, seconds: number): void;
  /** A registration ended: succeeded (step "") or failed at `step`. */
  registrationEnded(platform: string, outcome: "succeeded" | "failed", step: string): void;
  /** A warming action's platform call ended (outcome: done, failed, transient, fatal, interrupted). */
  warmingActionEnded(platform: string, type: string, outcome: string): void;
  /** A warming action was claimed `seconds` (scenario time) after it fell due. */
  warmingActionStarted(lagSeconds: number): void;
  /** An SMS activation reached `outcome` (rented, rent_failed, code_received, completed, cancelled, expired). */
  smsActivation(outcome: string): void;
  /**
   * A gauge whose samples are read at each scrape by `read` (label values → value). A read that
   * fails (the store is down) leaves the gauge without samples for that scrape rather than
   * failing the whole scrape; conveer_store_up says why.
   */
  addGauge(name: string, help: string, labelNames: readonly string[], read: () => Promise<Sample[]> | Sample[]): void;
  /** A counter whose cumulative value is kept elsewhere (it only grows), read at each scrape. */
  addCounter(name: string, help: string, labelNames: readonly string[], read: () => Sample[]): void;
};

/** One sample of a collected metric: its label values and value. */
export type Sample = { labels: Record<string, string>; value: number };

/** Creates the registry with process metrics, the per-call metrics and the domain counters. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const calls = new Counter({ name: "conveer_grpc_calls_total", help: "gRPC calls handled, by method and status code", labelNames: ["service", "method", "code"], registers });
  const outcomes = new Counter({
    name: "conveer_grpc_call_outcomes_total",
    help: "gRPC calls handled, by method and outcome: ok, failed (status OK with success=false in the response, e.g. a failed Register) or error (any other status)",
    labelNames: ["service", "method", "outcome"],
    registers,
  });
  const duration = new Histogram({
    name: "conveer_grpc_call_duration_seconds",
    help: "gRPC call handling time",
    labelNames: ["service", "method"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers,
  });
  const store = new Histogram({
    name: "conveer_store_query_duration_seconds",
    help: "Store queries (and transaction statements) of this process, by operation: the statement's verb and first table, e.g. \"select accounts\"",
    labelNames: ["operation"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers,
  });
  const registrations = new Counter({
    name: "conveer_registrations_total",
    help: "Registrations this process ended, by platform and outcome (succeeded, failed); step: where a failed one stopped (empty for succeeded)",
    labelNames: ["platform", "outcome", "step"],
    registers,
  });
  const actions = new Counter({
    name: "conveer_warming_actions_total",
    help: "Warming actions this process's worker ran through a platform, by platform, action type and outcome: done, failed (for good), transient (rate limit, outage: retried unless the task reached its failure limit), fatal (the account cannot act: the task fails), interrupted (the worker stopped)",
    labelNames: ["platform", "type", "outcome"],
    registers,
  });
  const lag = new Histogram({
    name: "conveer_warming_lag_seconds",
    help: "How late this process's worker started a warming action: claim time minus due time, in scenario seconds (CONVEER_TIME_SCALE)",
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600],
    registers,
  });
  const sms = new Counter({
    name: "conveer_sms_activations_total",
    help: "SMS activations this process moved, by outcome: rented, rent_failed, code_received, completed, cancelled, expired",
    labelNames: ["outcome"],
    registers,
  });
  return {
    registry,
    observeCall(service, method, code, seconds, outcome) {
      calls.inc({ service, method, code });
      outcomes.inc({ service, method, outcome: outcome ?? (code === "OK" ? "ok" : "error") });
      duration.observe({ service, method }, seconds);
    },
    storeQuery: (operation, seconds) => store.observe({ operation }, seconds),
    registrationEnded: (platform, outcome, step) => registrations.inc({ platform, outcome, step }),
    warmingActionEnded: (platform, type, outcome) => actions.inc({ platform, type, outcome }),
    warmingActionStarted: (seconds) => lag.observe(Math.max(0, seconds)),
    smsActivation: (outcome) => sms.inc({ outcome }),
    addGauge(name, help, labelNames, read) {
      new Gauge({
        name,
        help,
        labelNames: [...labelNames],
        registers,
        async collect() {
          let samples: Sample[];
          try {
            samples = await read();
          } catch {
            samples = [];
          }
          this.reset();
          for (const s of samples) this.set(s.labels, s.value);
        },
      });
    },
    addCounter(name, help, labelNames, read) {
      new Counter({
        name,
        help,
        labelNames: [...labelNames],
        registers,
        collect() {
          // The value is kept (and only grows) elsewhere: the counter shows it as it is now.
          this.reset();
          for (const s of read()) this.inc(s.labels, s.value);
        },
      });
    },
  };
}
