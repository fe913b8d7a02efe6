import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** What a call came to, beyond its status code (see Metrics.observeCall). */
export type CallOutcome = "ok" | "failed" | "error";

/** Prometheus metrics of one running system (a registry per instance: no module state). */
export type Metrics = {
  registry: Registry;
  /**
   * Counts one finished call by its gRPC code, and by its outcome: "ok", "error" (a status other
   * than OK), or "failed" (OK, but the response says success=false, as a failed Register does).
   * The outcome defaults from the code.
   */
  observeCall(service: string, method: string, code: string, seconds: number, outcome?: CallOutcome): void;
  /** A gauge read at each scrape: `read` answers a value per value of `label`. */
  addCollected(name: string, help: string, label: string, read: () => Record<string, number>): void;
};

/** Creates the registry with process metrics and the per-call histogram. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const calls = new Counter({ name: "conveer_grpc_calls_total", help: "gRPC calls handled, by method and status code", labelNames: ["service", "method", "code"], registers: [registry] });
  const outcomes = new Counter({
    name: "conveer_grpc_call_outcomes_total",
    help: "gRPC calls handled, by method and outcome: ok, failed (status OK with success=false in the response, e.g. a failed Register) or error (any other status)",
    labelNames: ["service", "method", "outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "conveer_grpc_call_duration_seconds",
    help: "gRPC call handling time",
    labelNames: ["service", "method"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [registry],
  });
  return {
    registry,
    observeCall(service, method, code, seconds, outcome) {
      calls.inc({ service, method, code });
      outcomes.inc({ service, method, outcome: outcome ?? (code === "OK" ? "ok" : "error") });
      duration.observe({ service, method }, seconds);
    },
    addCollected(name, help, label, read) {
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers: [registry],
        collect() {
          for (const [k, v] of Object.entries(read())) this.set({ [label]: k }, v);
        },
      });
    },
  };
}
