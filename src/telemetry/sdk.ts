/**
 * The OpenTelemetry Node SDK, started only when OTEL_* configures traces (Config.tracing). It is
 * imported dynamically here and nowhere else, so a process without OTEL_* never loads it.
 * Everything about the export (exporter, protocol, endpoint, headers, sampler, batching, resource,
 * propagators) is the SDK's own reading of the standard variables; Conveer sends traces only
 * (no OTel metrics or logs: those are prom-client and pino).
 */
import type { Logger } from "pino";
import type { Config } from "../config/config.ts";

/** A started SDK: shutdown() exports what is buffered, then stops. */
export type TracingSdk = { shutdown(): Promise<void> };

/** Starts the SDK when config.tracing says OTEL_* asks for traces; resolves undefined (nothing loaded) otherwise. */
export async function startTracingSdk(config: Config, log: Logger): Promise<TracingSdk | undefined> {
  if (!config.tracing.enabled) return undefined;
  const { NodeSDK } = await import("@opentelemetry/sdk-node");
  const sdk = new NodeSDK({
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; "conveer" only when they name no service.
    serviceName: config.tracing.defaultServiceName,
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  log.info({ exporter: config.tracing.exporter }, "tracing on: OpenTelemetry SDK started from OTEL_* variables");
  return {
    async shutdown() {
      await sdk.shutdown().catch((err: unknown) => log.warn({ err: String(err) }, "the OpenTelemetry SDK did not shut down cleanly (spans may be lost)"));
    },
  };
}
