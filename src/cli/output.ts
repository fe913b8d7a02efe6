import { once } from "node:events";
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
  const widths = header.map((h, i) => rows.reduce((w, r) => Math.max(w, r[i].length), h.length));
  for (const r of [header, ...rows]) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd() + "\n");
}

/**
 * Prints a paged listing: JSON Lines and CSV as each page arrives (one page in memory, waiting
 * while standard output is full), a table once every page is in (it needs the column widths).
 */
export async function printPages<Desc extends DescMessage>(format: OutputFormat, schema: Desc, pages: AsyncIterable<MessageShape<Desc>[]>, columns: readonly Column<MessageShape<Desc>>[]): Promise<void> {
  if (format === "table") {
    const all: MessageShape<Desc>[] = [];
    for await (const page of pages) all.push(...page);
    return printMessages(format, schema, all, columns);
  }
  const write = async (s: string) => {
    if (!process.stdout.write(s)) await once(process.stdout, "drain");
  };
  if (format === "csv") await write(csvLine(columns.map(([h]) => h)));
  for await (const page of pages) {
    const lines = page.map((m) => (format === "json" ? JSON.stringify(toJson(schema, m, { alwaysEmitImplicit: true })) + "\n" : csvLine(columns.map(([, value]) => String(value(m))))));
    await write(lines.join(""));
  }
}

/** One CSV record (RFC 4180 quoting), newline included. */
export function csvLine(cells: readonly string[]): string {
  return cells.map(csvCell).join(",") + "\n";
}

function csvCell(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}
