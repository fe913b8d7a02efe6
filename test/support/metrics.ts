/** Reading a Prometheus text exposition (/metrics) in tests. */

/** One sample: metric name, labels, value. */
export type MetricSample = { name: string; labels: Record<string, string>; value: number };

/** Parses the text format's samples (comments and TYPE/HELP lines skipped). */
export function parseMetrics(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The names of the metric families a /metrics text declares (# TYPE lines). */
export function metricFamilies(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
}

/** Scrapes http://127.0.0.1:PORT/metrics. */
export async function scrape(httpPort: number): Promise<{ text: string; samples: MetricSample[] }> {
  const r = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${await r.text()}`);
  const text = await r.text();
  return { text, samples: parseMetrics(text) };
}

/** The sum of the samples of `name` whose labels include `labels`; undefined when none matches. */
export function valueOf(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hits.length === 0 ? undefined : hits.reduce((a, s) => a + s.value, 0);
}
