import { InvalidArgumentError } from "commander";
import { toJson } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";

/** How a listing command prints: an aligned table, JSON Lines (proto JSON names, every field), or CSV. */
export type OutputFormat = "table" | "json" | "csv";

/** Parses `--output`. */
export function outputFormat(v: string): OutputFormat {
  if (v !== "table" && v !== "json" && v !== "csv") throw new InvalidArgumentError("must be table, json or csv");
  return v;
}

/** A column of a table or CSV: its header and how to show a message's value. */
export type Column<M> = [header: string, value: (m: M) => string | number];

/**
 * Prints messages in the chosen format: `json` is one object per line with the proto JSON field
 * names (the same names as the HTTP/JSON API) and every field; `table` and `csv` show the columns.
 */
export function printMessages<Desc extends DescMessage>(format: OutputFormat, schema: Desc, messages: readonly MessageShape<Desc>[], columns: readonly Column<MessageShape<Desc>>[]): void {
  if (format === "json") {
    for (const m of messages) process.stdout.write(JSON.stringify(toJson(schema, m, { alwaysEmitImplicit: true })) + "\n");
    return;
  }
  const rows = messages.map((m) => columns.map(([, value]) => String(value(m))));
  const header = columns.map(([h]) => h);
  if (format === "csv") {
    for (const r of [header, ...rows]) process.stdout.write(csvLine(r));
    return;
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [header, ...rows]) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd() + "\n");
}

/** One CSV record (RFC 4180 quoting), newline included. */
export function csvLine(cells: readonly string[]): string {
  return cells.map(csvCell).join(",") + "\n";
}

function csvCell(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}
