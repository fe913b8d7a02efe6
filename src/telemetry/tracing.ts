/**
 * Traces through the OpenTelemetry API: the one tracer, and the small helpers every hop uses
 * (spans around a piece of work, W3C trace context in and out of headers, trace ids for the log).
 * Only `@opentelemetry/api` is imported here; the SDK is loaded by ./sdk.ts, and only when OTEL_*
 * configures it. Without a registered tracer provider every call below is the API's no-op, and
 * the hot paths (the call chain, the store, peer clients, the warming worker) leave tracing out
 * entirely: they ask `tracingEnabled()` once, when they are built.
 */
import { ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, context, propagation, trace } from "@opentelemetry/api";
import type { Attributes, Context, Link, Span, SpanContext, SpanOptions, TextMapGetter, TextMapSetter } from "@opentelemetry/api";

export { SpanKind, SpanStatusCode, context, trace };
export type { Attributes, Context, Span };

/** Conveer's tracer (a proxy: it follows whichever provider is registered, none → no-op). */
export const tracer = trace.getTracer("conveer");

/** The API's no-op provider, what an unregistered global provider delegates to. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/** True when a tracer provider is registered (the SDK started, or a test registered one). Asked once by what builds a hot path. */
export function tracingEnabled(): boolean {
  const p = trace.getTracerProvider();
  return !(p instanceof ProxyTracerProvider) || p.getDelegate() !== NOOP_PROVIDER;
}

/**
 * Runs fn inside a new active span, ended when fn settles; a throw marks the span ERROR (with the
 * exception's message, never its values) and is rethrown.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => Promise<T>, parent: Context = context.active()): Promise<T> {
  const span = tracer.startSpan(name, options, parent);
  return context.with(trace.setSpan(parent, span), async () => {
    try {
      return await fn(span);
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span failed by err: status ERROR with its message, and the exception event. */
export function failSpan(span: Span, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message.slice(0, 256) });
  if (err instanceof Error) span.recordException({ name: err.name, message: message.slice(0, 256) });
}

/** Reads a header from a WHATWG Headers (Connect's, and ServerCall.requestHeader()). */
const headersGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};

/** Writes a header into a WHATWG Headers. */
const headersSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };

/** Writes a header into a plain object of headers (node:http). */
const recordSetter: TextMapSetter<Record<string, string>> = {
  set: (h, key, value) => {
    h[key] = value;
  },
};

/** The trace context a caller sent (traceparent, tracestate, baggage), as the parent of this side's spans. */
export function extractFrom(headers: Headers): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headersGetter);
}

/** Puts the active (or given) context's traceparent into outgoing headers; nothing when no span is active. */
export function injectInto(headers: Headers | Record<string, string>, ctx: Context = context.active()): void {
  if (headers instanceof Headers) propagation.inject(ctx, headers, headersSetter);
  else propagation.inject(ctx, headers, recordSetter);
}

/** The active span's W3C traceparent ("00-<trace>-<span>-<flags>"), or "" outside a sampled or unsampled span. */
export function activeTraceparent(): string {
  const sc = trace.getSpanContext(context.active());
  if (!sc || !trace.isSpanContextValid(sc)) return "";
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? "01" : "00"}`;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A link to the span a stored traceparent names (e.g. the call that started a warming task); none when it is empty or malformed. */
export function linksTo(traceparent: string): Link[] {
  const m = TRACEPARENT.exec(traceparent);
  if (!m) return [];
  const sc: SpanContext = { traceId: m[1], spanId: m[2], traceFlags: Number.parseInt(m[3], 16), isRemote: true };
  return trace.isSpanContextValid(sc) ? [{ context: sc }] : [];
}

/**
 * pino's `mixin`: the active span's trace_id and span_id in every log line written inside a traced
 * call, so a line leads to its trace and back. Nothing outside one. A new object each time: pino
 * merges the line's own fields into it.
 */
export function traceMixin(): object {
  const sc = trace.getSpanContext(context.active());
  if (!sc || !trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

/** Span kinds by name, for callers that only need one. */
export const CLIENT = SpanKind.CLIENT;
export const SERVER = SpanKind.SERVER;
export const INTERNAL = SpanKind.INTERNAL;
