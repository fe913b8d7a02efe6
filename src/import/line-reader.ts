import { createReadStream } from "node:fs";
import { extname } from "node:path";
import { parse as parseCsvSync } from "csv-parse/sync";
import { quote } from "../errors.ts";

/**
 * Streaming readers for import files (CSV and JSON Lines), shared by the accounts and proxies
 * imports: a line at a time, so a million-line file never sits in memory, and a bad line is an
 * error for that line only.
 */

/** The import file formats. */
export type ImportFormat = "csv" | "jsonl";

/** A physical line of a file (1-based number, without its line break); `tooLong` when it was cut off. */
export type RawLine = { line: number; text: string; tooLong?: boolean };

/** Longest line kept, so a file without line breaks cannot make us buffer all of it. */
export const MAX_LINE_CHARS = 1 << 20;
// A quoted field may span lines; past these limits an unclosed quote is reported instead of
// swallowing (and buffering) the rest of the file.
const MAX_RECORD_LINES = 100;
const MAX_RECORD_CHARS = 1 << 20;

/** Streams a utf8 file as lines (\n or \r\n, BOM dropped), holding at most one line in memory. */
export async function* readLines(path: string, maxChars: number = MAX_LINE_CHARS): AsyncGenerator<RawLine> {
  const stream = createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 16 });
  let carry = "";
  let n = 0;
  // Set while skipping the remainder of an over-long line up to its line break.
  let discarding = false;
  const emit = (text: string): RawLine => {
    n++;
    if (discarding || text.length > maxChars) {
      discarding = false;
      return { line: n, text: "", tooLong: true };
    }
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (n === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return { line: n, text };
  };
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      const buf = carry + chunk;
      carry = "";
      let start = 0;
      for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n", start)) {
        yield emit(buf.slice(start, nl));
        start = nl + 1;
      }
      if (discarding) continue;
      if (buf.length - start > maxChars) discarding = true;
      else carry = buf.slice(start);
    }
    if (discarding || carry !== "") yield emit(carry);
  } finally {
    stream.destroy();
  }
}

/** One CSV record: its fields, or an error; `line` is where the record starts. */
export type CsvRecord = { line: number; fields?: string[]; error?: string };

/** Error text for an over-long line. */
export function tooLongError(line: number): string {
  return `line ${line}: longer than ${MAX_LINE_CHARS} characters; split it or check that the file is really line-based`;
}

// Tracks RFC 4180 quoting across physical lines, to know whether a line break ends the record
// or is part of a quoted field. Returns whether a quoted field is still open at the end.
function stillQuoted(text: string, inQuotes: boolean): boolean {
  let fieldStart = !inQuotes;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inQuotes) {
      if (c === 34) {
        if (text.charCodeAt(i + 1) === 34) i++;
        else {
          inQuotes = false;
          fieldStart = false;
        }
      }
    } else if (c === 44) fieldStart = true;
    else if (c === 34 && fieldStart) {
      inQuotes = true;
      fieldStart = false;
    } else fieldStart = false;
  }
  return inQuotes;
}

/** The fix to suggest for any CSV quoting problem. */
export const QUOTING_FIX = `quote a field that contains commas, quotes or line breaks as "...", doubling each quote inside it ("")`;

// csv-parse does the field splitting of records with quotes; its own skip_records_with_error
// recovery is not used because after a quote error it keeps reading the following lines into the
// broken field (or stops), losing good records, and its line numbers are where a record ends.
function splitQuoted(text: string): { fields?: string[]; problem?: string } {
  try {
    const rows = parseCsvSync(text, { relax_column_count: true, skip_empty_lines: false });
    if (rows.length !== 1) return { problem: `expected one record, found ${rows.length}` };
    return { fields: rows[0] };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "CSV_INVALID_CLOSING_QUOTE") return { problem: "a quoted field has characters after its closing quote" };
    if (code === "INVALID_OPENING_QUOTE") return { problem: 'a quote (") appears inside an unquoted field' };
    if (code === "CSV_QUOTE_NOT_CLOSED") return { problem: "a quoted field is never closed" };
    return { problem: String((err as Error).message ?? err).replace(/\s*(at|on) line \d+/, "") };
  }
}

/**
 * Streams CSV records from lines. A malformed record becomes an error for its first line and
 * reading resumes on the line after it, so one bad quote costs one record, not the rest of the file.
 */
export async function* csvRecords(lines: AsyncIterable<RawLine>): AsyncGenerator<CsvRecord> {
  const it = lines[Symbol.asyncIterator]();
  // Lines taken back from an abandoned multi-line record, to be read again one by one.
  const again: RawLine[] = [];
  let pending: RawLine[] = [];
  let pendingChars = 0;
  const abandon = (extra: RawLine[], problem: string): CsvRecord => {
    const first = pending[0];
    again.unshift(...pending.slice(1), ...extra);
    pending = [];
    pendingChars = 0;
    return { line: first.line, error: `line ${first.line}: malformed CSV: ${problem}; ${QUOTING_FIX}` };
  };
  try {
    for (;;) {
      let l = again.shift();
      if (l === undefined) {
        const r = await it.next();
        if (!r.done) l = r.value;
      }
      if (l === undefined) {
        if (pending.length === 0) return;
        yield abandon([], "a quoted field opened on this line is never closed");
        continue;
      }
      if (l.tooLong) {
        if (pending.length > 0) yield abandon([l], "a quoted field opened on this line is never closed");
        else yield { line: l.line, error: tooLongError(l.line) };
        continue;
      }
      if (pending.length === 0) {
        if (l.text.trim() === "") continue;
        // Fast path: most lines hold no quotes at all.
        if (!l.text.includes('"')) {
          yield { line: l.line, fields: l.text.split(",") };
          continue;
        }
      }
      const open = stillQuoted(l.text, pending.length > 0);
      pending.push(l);
      pendingChars += l.text.length + 1;
      if (open) {
        if (pending.length > MAX_RECORD_LINES || pendingChars > MAX_RECORD_CHARS) {
          yield abandon([], `a quoted field opened on this line is not closed within ${MAX_RECORD_LINES} lines`);
        }
        continue;
      }
      const { fields, problem } = splitQuoted(pending.map((p) => p.text).join("\n"));
      if (fields) {
        yield { line: pending[0].line, fields };
        pending = [];
        pendingChars = 0;
      } else {
        yield abandon([], problem!);
      }
    }
  } finally {
    // A consumer that stops early must still close the file.
    await it.return?.();
  }
}

/** Yields the first line (already read to detect the format) and then the rest. */
export async function* prepend(first: RawLine[], rest: AsyncIterator<RawLine>): AsyncGenerator<RawLine> {
  try {
    yield* first;
    for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
  } finally {
    // A consumer that stops early must still close the file.
    await rest.return?.();
  }
}

/** The format named by a file's extension, or undefined when the extension does not say. */
export function formatFromExtension(path: string): ImportFormat | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === ".csv") return "csv";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  return undefined;
}

/** Names a JSON value's type for messages ("array", "null", "number"...). */
export function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** Parses one JSONL line into an object, or says why it is not one. */
export function parseJsonObject(text: string): { obj?: Record<string, unknown>; problem?: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { problem: `not valid JSON (${(err as Error).message})` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { problem: `expected a JSON object, got ${jsonType(v)}` };
  return { obj: v as Record<string, unknown> };
}

/**
 * Sniffs the format when the extension does not tell: a first non-blank line starting with "{"
 * is JSONL, anything else CSV. Returns the lines read so far so nothing is lost.
 */
export async function sniffFormat(it: AsyncIterator<RawLine>): Promise<{ format: ImportFormat; head: RawLine[] }> {
  const head: RawLine[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) {
    head.push(r.value);
    if (r.value.tooLong || r.value.text.trim() !== "") return { format: r.value.text.trimStart().startsWith("{") ? "jsonl" : "csv", head };
  }
  return { format: "csv", head };
}


/** One JSON Lines object with the problems found so far, or an error for its line. */
export type JsonlRecord = { line: number; obj?: Record<string, unknown>; problems: string[]; error?: string };

/**
 * Reads JSON Lines objects, skipping blank lines; an unparsable line or one that is not an
 * object becomes an error naming the example; unknown fields are listed as problems.
 */
export async function* jsonlObjects(lines: AsyncIterable<RawLine>, fields: readonly string[], example: string): AsyncGenerator<JsonlRecord> {
  for await (const l of lines) {
    if (l.tooLong) {
      yield { line: l.line, problems: [], error: tooLongError(l.line) };
      continue;
    }
    if (l.text.trim() === "") continue;
    const { obj, problem } = parseJsonObject(l.text);
    if (!obj) {
      yield { line: l.line, problems: [], error: `line ${l.line}: ${problem}; each line must be one object like ${example}` };
      continue;
    }
    const problems: string[] = [];
    const unknown = Object.keys(obj).filter((k) => !fields.includes(k));
    if (unknown.length > 0) {
      problems.push(`unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => quote(k)).join(", ")}; the fields are ${fields.join(", ")}`);
    }
    yield { line: l.line, obj, problems };
  }
}

/** One CSV data row with the header's columns, or an error for its line. */
export type CsvRow<C> = { line: number; columns?: readonly C[]; fields?: string[]; error?: string };

/**
 * Reads a CSV file whose first record is a header: `parseHeader` turns it into columns or a
 * problem (which ends the file: no row can be read without it). Rows whose width differs from the
 * header's are errors naming `widthFix`; other rows come with their fields.
 */
export async function* csvRows<C>(
  lines: AsyncIterable<RawLine>,
  parseHeader: (fields: string[]) => { columns?: C[]; problem?: string },
  widthFix: string,
): AsyncGenerator<CsvRow<C>> {
  let columns: C[] | undefined;
  for await (const rec of csvRecords(lines)) {
    if (rec.error) {
      // Without a readable header no row can be understood, so the header's error is the only one.
      yield { line: rec.line, error: columns ? rec.error : `${rec.error} (in the header row)` };
      if (!columns) return;
      continue;
    }
    const fields = rec.fields!;
    if (!columns) {
      const h = parseHeader(fields);
      if (!h.columns) {
        yield { line: rec.line, error: `line ${rec.line}: ${h.problem}` };
        return;
      }
      columns = h.columns;
      continue;
    }
    if (fields.length !== columns.length) {
      yield { line: rec.line, error: `line ${rec.line}: has ${fields.length} field${fields.length === 1 ? "" : "s"} but the header has ${columns.length} columns; ${widthFix}` };
      continue;
    }
    yield { line: rec.line, columns, fields };
  }
}
