/** Small statistics, table and knob helpers for the benchmarks. */

/** The q-quantile (0..1) of values, nearest-rank on a sorted copy; NaN for none. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/** Median of a few numbers. */
export function median(values: number[]): number {
  return quantile(values, 0.5);
}

/** Renders rows as an aligned, pipe-separated table (first row is the header). */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ");
  const sep = widths.map((w) => "-".repeat(w)).join("-|-");
  return [line(rows[0]), sep, ...rows.slice(1).map(line)].join("\n");
}

/** Formats a number with a fixed count of decimals, or "-" when not finite. */
export function fmt(n: number, decimals = 0): string {
  return Number.isFinite(n) ? n.toFixed(decimals) : "-";
}

/** An integer knob from the environment (unset or "": `def`); throws naming it when it is not an integer of at least `min`. */
export function envInt(name: string, def: number, min = 1): number {
  const v = process.env[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}
