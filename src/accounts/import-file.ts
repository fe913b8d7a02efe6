import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { parseStatus, statusName } from "./account-status.ts";
import { QUOTING_FIX, csvRows, formatFromExtension, jsonType, jsonlObjects, prepend, readLines, sniffFormat } from "../import/line-reader.ts";
import type { ImportFormat, RawLine } from "../import/line-reader.ts";
import { quote } from "../errors.ts";

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
  else if (!isPlatform(platform)) problems.push(`platform ${quote(raw.platform)} is not one of ${PLATFORMS.join(", ")}`);

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
    problems.push(`phone ${quote(raw.phone)} is not in E.164 form; write + then the country code and number (10-15 digits), e.g. +79991234567, or leave it empty`);
  }

  let status = "";
  if (raw.status !== null && raw.status.trim() !== "") {
    const s = parseStatus(raw.status);
    if (s === undefined) problems.push(`status ${quote(raw.status)} is not one of ${IMPORT_STATUSES.join(", ")}; leave it empty for ACTIVE`);
    else if (s === AccountStatus.DELETED) problems.push(`status ${quote(raw.status)} cannot be imported; use one of ${IMPORT_STATUSES.join(", ")}`);
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
      unknown.push(quote(name));
      continue;
    }
    const id = "key" in col ? `${col.field}.${col.key}` : col.field;
    if (seen.has(id)) dup.push(quote(name));
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
  for await (const { line, columns, fields, error } of csvRows(lines, parseHeader, QUOTING_FIX)) {
    if (!columns || !fields) {
      yield { line, error };
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
    yield validate(line, raw, []);
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
  for await (const { line, obj, problems, error } of jsonlObjects(lines, FIELDS, JSONL_EXAMPLE)) {
    if (!obj) {
      yield { line, error };
      continue;
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
    yield validate(line, raw, problems);
  }
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
