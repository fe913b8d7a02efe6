import { createReadStream } from "node:fs";
import { extname } from "node:path";
import { parse as parseCsvSync } from "csv-parse/sync";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { parseStatus, statusName } from "./account-status.ts";

/** One account to import, as parsed. */
export type AccountImportItem = {
  platform: string;
  login: string;
  password: string;
  phone: string;
  additional: Record<string, string>;
  labels: Record<string, string>;
  /** "" (the server's default, ACTIVE) or the canonical enum name such as "ACCOUNT_STATUS_ACTIVE". */
  status: string;
};

/** One parsed line: either an item or an error naming the line number, what is wrong and how to fix it. */
export type ParsedLine = { line: number; item?: AccountImportItem; error?: string };

/** The import file formats. */
export type ImportFormat = "csv" | "jsonl";

// ---------------------------------------------------------------------------------------------
// Line and CSV record reading, shared with the proxies import (src/proxies/proxy-url.ts).
// ---------------------------------------------------------------------------------------------

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

const QUOTING_FIX = `quote a field that contains commas, quotes or line breaks as "...", doubling each quote inside it ("")`;

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

// ---------------------------------------------------------------------------------------------
// Accounts.
// ---------------------------------------------------------------------------------------------

const PHONE = /^\+[1-9]\d{9,14}$/;
const MAX_LOGIN = 256;
const FIELDS = ["platform", "login", "password", "phone", "status", "additional", "labels"];
const CSV_COLUMNS = "platform,login,password[,phone][,status][,additional.<key>...][,label.<key>...]";
const JSONL_EXAMPLE = `{"platform":"vk","login":"user1","password":"secret","phone":"+79991234567"}`;
// Only the states a new account may start in; DELETED is refused by the server for new accounts.
const IMPORT_STATUSES = [AccountStatus.ACTIVE, AccountStatus.WARMING, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.CREATING].map(
  (s) => AccountStatus[s],
);

// A null field had the wrong type and is already reported, so it is not checked again.
type RawItem = {
  platform: string | null;
  login: string | null;
  password: string | null;
  phone: string | null;
  status: string | null;
  additional: Record<string, string>;
  labels: Record<string, string>;
};

/** Checks and normalizes one account; every problem on the line is reported at once. */
function validate(line: number, raw: RawItem, problems: string[]): ParsedLine {
  const platform = (raw.platform ?? "").trim().toLowerCase();
  if (raw.platform === null) {
    // already reported
  } else if (platform === "") problems.push(`platform is empty; use one of ${PLATFORMS.join(", ")}`);
  else if (!isPlatform(platform)) problems.push(`platform ${JSON.stringify(raw.platform)} is not one of ${PLATFORMS.join(", ")}`);

  const login = (raw.login ?? "").trim();
  if (raw.login === null) {
    // already reported
  } else if (login === "") problems.push("login is empty; give the account's login on the platform");
  else if (login.length > MAX_LOGIN) problems.push(`login is ${login.length} characters; at most ${MAX_LOGIN} are allowed`);

  // The password is kept byte for byte: leading or trailing spaces may be part of it.
  const password = raw.password ?? "";
  if (raw.password === "") problems.push("password is empty; give the account's password");

  // Separators people write in phone numbers are dropped; what remains must be E.164.
  const phone = (raw.phone ?? "").replace(/[\s()-]/g, "");
  if (phone !== "" && !PHONE.test(phone)) {
    problems.push(`phone ${JSON.stringify(raw.phone)} is not in E.164 form; write + then the country code and number (10-15 digits), e.g. +79991234567, or leave it empty`);
  }

  let status = "";
  if (raw.status !== null && raw.status.trim() !== "") {
    const s = parseStatus(raw.status);
    if (s === undefined) problems.push(`status ${JSON.stringify(raw.status)} is not one of ${IMPORT_STATUSES.join(", ")}; leave it empty for ACTIVE`);
    else if (s === AccountStatus.DELETED) problems.push(`status ${JSON.stringify(raw.status)} cannot be imported; use one of ${IMPORT_STATUSES.join(", ")}`);
    else status = statusName(s);
  }

  if (problems.length > 0) return { line, error: `line ${line}: ${problems.join("; ")}` };
  return { line, item: { platform, login, password, phone, additional: raw.additional, labels: raw.labels, status } };
}

type Column = { field: "platform" | "login" | "password" | "phone" | "status" } | { field: "additional" | "labels"; key: string };

/** Reads the header row into column meanings, or says what is wrong with it. */
function parseHeader(fields: string[]): { columns?: Column[]; problem?: string } {
  const columns: Column[] = [];
  const unknown: string[] = [];
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const rawName of fields) {
    const name = rawName.trim();
    const lower = name.toLowerCase();
    let col: Column | undefined;
    if (lower === "platform" || lower === "login" || lower === "password" || lower === "phone" || lower === "status") col = { field: lower };
    else {
      const m = /^(additional|labels?)\.(.+)$/i.exec(name);
      if (m) col = { field: m[1].toLowerCase() === "additional" ? "additional" : "labels", key: m[2].trim() };
    }
    if (!col) {
      unknown.push(JSON.stringify(name));
      continue;
    }
    const id = "key" in col ? `${col.field}.${col.key}` : col.field;
    if (seen.has(id)) dup.push(JSON.stringify(name));
    seen.add(id);
    columns.push(col);
  }
  const problems: string[] = [];
  if (unknown.length > 0) problems.push(`unknown column${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}`);
  if (dup.length > 0) problems.push(`duplicate column${dup.length > 1 ? "s" : ""} ${dup.join(", ")}`);
  const missing = ["platform", "login", "password"].filter((f) => !seen.has(f));
  // A forgotten header: say so instead of listing the row's values (one may be a password).
  if (missing.length === 3 && isPlatform(fields[0]?.trim().toLowerCase() ?? "")) {
    return { problem: `the first line looks like data, not a header; add a header line first: ${CSV_COLUMNS}` };
  }
  if (missing.length > 0) problems.push(`missing column${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`);
  if (problems.length > 0) return { problem: `${problems.join("; ")}; the first line must be a header naming the columns: ${CSV_COLUMNS}` };
  return { columns };
}

async function* readCsv(lines: AsyncIterable<RawLine>): AsyncGenerator<ParsedLine> {
  let columns: Column[] | undefined;
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
      yield {
        line: rec.line,
        error: `line ${rec.line}: has ${fields.length} field${fields.length === 1 ? "" : "s"} but the header has ${columns.length} columns; ${QUOTING_FIX}`,
      };
      continue;
    }
    const raw: RawItem = { platform: "", login: "", password: "", phone: "", status: "", additional: {}, labels: {} };
    for (let i = 0; i < columns.length; i++) {
      const col = columns[i];
      if ("key" in col) {
        // An empty cell means "no such entry" for this account, so sparse columns stay sparse.
        if (fields[i] !== "") raw[col.field][col.key] = fields[i];
      } else raw[col.field] = fields[i];
    }
    yield validate(rec.line, raw, []);
  }
}

function stringMap(v: unknown, field: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (v === undefined || v === null) return out;
  if (typeof v !== "object" || Array.isArray(v)) {
    problems.push(`${field} must be an object of strings like {"key":"value"}, got ${jsonType(v)}`);
    return out;
  }
  const bad: string[] = [];
  for (const [k, val] of Object.entries(v)) {
    if (typeof val === "string") out[k] = val;
    else if (typeof val === "number" || typeof val === "boolean") out[k] = String(val);
    else bad.push(`${field}.${k}`);
  }
  if (bad.length > 0) problems.push(`${bad.join(", ")} must be ${bad.length > 1 ? "strings" : "a string"}`);
  return out;
}

function stringField(obj: Record<string, unknown>, field: string, problems: string[]): string | null {
  const v = obj[field];
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  problems.push(`${field} must be a string, got ${jsonType(v)}; put it in quotes`);
  return null;
}

async function* readJsonl(lines: AsyncIterable<RawLine>): AsyncGenerator<ParsedLine> {
  for await (const l of lines) {
    if (l.tooLong) {
      yield { line: l.line, error: tooLongError(l.line) };
      continue;
    }
    if (l.text.trim() === "") continue;
    const { obj, problem } = parseJsonObject(l.text);
    if (!obj) {
      yield { line: l.line, error: `line ${l.line}: ${problem}; each line must be one object like ${JSONL_EXAMPLE}` };
      continue;
    }
    const problems: string[] = [];
    const unknown = Object.keys(obj).filter((k) => !FIELDS.includes(k));
    if (unknown.length > 0) {
      problems.push(`unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")}; the fields are ${FIELDS.join(", ")}`);
    }
    const raw: RawItem = {
      platform: stringField(obj, "platform", problems),
      login: stringField(obj, "login", problems),
      password: stringField(obj, "password", problems),
      phone: stringField(obj, "phone", problems),
      status: stringField(obj, "status", problems),
      additional: stringMap(obj.additional, "additional", problems),
      labels: stringMap(obj.labels, "labels", problems),
    };
    yield validate(l.line, raw, problems);
  }
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

/** Streams an accounts import file (.csv, or .jsonl/.ndjson; otherwise sniffed), one ParsedLine per data line. */
export async function* readAccountImportFile(path: string, opts: { format?: ImportFormat } = {}): AsyncGenerator<ParsedLine> {
  const it = readLines(path)[Symbol.asyncIterator]();
  let format = opts.format ?? formatFromExtension(path);
  let head: RawLine[] = [];
  if (!format) ({ format, head } = await sniffFormat(it));
  const lines = prepend(head, it);
  if (format === "csv") yield* readCsv(lines);
  else yield* readJsonl(lines);
}
