import { isIPv4, isIPv6 } from "node:net";
import { csvRows, formatFromExtension, jsonType, jsonlObjects, prepend, readLines, tooLongError } from "../import/line-reader.ts";
import type { RawLine } from "../import/line-reader.ts";
import { quote } from "../errors.ts";

/** A proxy parsed from a URL like socks5://user:pass@host:port or http://host:port; an IPv6 host is given without brackets. */
export type ParsedProxyUrl = { protocol: "http" | "https" | "socks5"; host: string; port: number; username: string; password: string };

/** One proxy to add, as read from an import file (the fields of ProxySpec). */
export type ProxyImportItem = { url: string; country: string; provider: string; tags: string[]; capacity: number };

/** One parsed line of a proxies import file: an item, or an error naming the line and the fix. */
export type ProxyImportLine = { line: number; item?: ProxyImportItem; error?: string };

const FORM = "expected scheme://[user:pass@]host:port with scheme http, https or socks5, e.g. socks5://user:pass@203.0.113.5:1080 or http://[2001:db8::1]:3128";
const SCHEMES: Record<string, ParsedProxyUrl["protocol"]> = { http: "http", https: "https", socks5: "socks5", socks5h: "socks5" };
const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

// Errors quote the URL so the user can find it, but never its password, whatever the shape of the
// mistake: the scheme, then either credentials' user and "@host:port" (a password and anything else
// in the user part hidden), or a host and a numeric port (anything after them hidden, as in a
// vendor list's "host:port:user:pass", whose user may hold an "@" and whose password may too).
function redact(url: string): string {
  const scheme = /^[^:/]*:\/\//.exec(url)?.[0] ?? "";
  const rest = url.slice(scheme.length);
  const at = rest.lastIndexOf("@");
  const head = at === -1 ? rest : rest.slice(0, at);
  const tail = rest.slice(at + 1);
  if (at !== -1 && head.split(":").length <= 2 && /^(\[[^\]]*\]|[^:@[\]]*)(:\d*)?\/?$/.test(tail)) {
    return quote(`${scheme}${head.split(":")[0]}${head.includes(":") ? ":***" : ""}@${tail}`);
  }
  const kept = /^(\[[^\]]*\]|[^:@/[\]]*)(:\d+(?![^:/]))?/.exec(rest)?.[0] ?? "";
  return quote(`${scheme}${kept}${rest.length > kept.length ? `${rest[kept.length]}***` : ""}`);
}

function decode(part: string, what: string, fail: (problem: string) => never): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return fail(`has a malformed percent-escape in the ${what}; write reserved characters as %XX, e.g. @ as %40 and : as %3A`);
  }
}

/** Parses and validates a proxy URL; the error names the problem and the accepted form, never echoing a password. */
export function parseProxyUrl(url: string): ParsedProxyUrl {
  const text = String(url ?? "").trim();
  const shown = redact(text);
  const fail = (problem: string): never => {
    throw new Error(`${shown} ${problem}; ${FORM}`);
  };
  if (text === "") return fail("is empty");
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(text);
  if (!m) return fail(`has no scheme${text.split(":").length > 3 && !text.includes("@") ? " (a host:port:user:pass line is written http://user:pass@host:port)" : ""}`);
  const protocol = SCHEMES[m[1].toLowerCase()];
  if (!protocol) return fail(`has unsupported scheme "${m[1]}"`);
  let rest = m[2];
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  // The last "@" ends the credentials, so an unescaped "@" in a password still parses.
  const at = rest.lastIndexOf("@");
  const userinfo = at === -1 ? "" : rest.slice(0, at);
  const hostport = at === -1 ? rest : rest.slice(at + 1);
  if (/[/?#]/.test(hostport)) return fail("has a path, query or fragment; give only host and port");

  let username = "";
  let password = "";
  if (at !== -1) {
    const colon = userinfo.indexOf(":");
    username = decode(colon === -1 ? userinfo : userinfo.slice(0, colon), "username", fail);
    password = colon === -1 ? "" : decode(userinfo.slice(colon + 1), "password", fail);
    if (username === "") return fail("has an empty username; give user:pass@ or leave the credentials out");
  }

  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith("[")) {
    const close = hostport.indexOf("]");
    if (close === -1) return fail('has an IPv6 host without its closing "]"');
    host = hostport.slice(1, close);
    if (!isIPv6(host)) return fail(`has an invalid IPv6 address [${host}]`);
    const after = hostport.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) return fail('has characters after the IPv6 host; expected "]:port"');
    portText = after === "" ? undefined : after.slice(1);
  } else {
    const colon = hostport.lastIndexOf(":");
    host = colon === -1 ? hostport : hostport.slice(0, colon);
    portText = colon === -1 ? undefined : hostport.slice(colon + 1);
    if (host.includes(":")) return fail("has an IPv6 host without brackets; write it as [2001:db8::1]:port");
    if (host === "") return fail("has no host");
    if (!isIPv4(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host))) return fail(`has an invalid host "${host}"`);
  }
  if (portText === undefined || portText === "") return fail("has no port; the port is required");
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return fail(`has an invalid port "${portText}"; use 1-65535`);
  return { protocol, host: host.toLowerCase(), port: Number(portText), username, password };
}

/** Writes a parsed proxy back as a canonical URL (socks5h becomes socks5, credentials percent-encoded). */
export function formatProxyUrl(p: ParsedProxyUrl): string {
  const creds = p.username ? `${encodeURIComponent(p.username)}${p.password ? `:${encodeURIComponent(p.password)}` : ""}@` : "";
  const host = isIPv6(p.host) ? `[${p.host}]` : p.host;
  return `${p.protocol}://${creds}${host}:${p.port}`;
}

const COUNTRY = /^[A-Z]{2}$/;
const MAX_CAPACITY = 10_000;
const FIELDS = ["url", "country", "provider", "tags", "capacity"];
const CSV_HEADER = "url,country,provider,tags,capacity";
const JSONL_EXAMPLE = `{"url":"socks5://user:pass@203.0.113.5:1080","country":"RU","provider":"acme","tags":["mobile"],"capacity":2}`;

type RawProxy = { url: unknown; country: unknown; provider: unknown; tags: unknown; capacity: unknown };

/** Checks one proxy entry and reports every problem on the line at once. */
function validateProxy(line: number, raw: RawProxy, problems: string[]): ProxyImportLine {
  let url = "";
  if (typeof raw.url !== "string") problems.push(raw.url === undefined ? `url is missing; ${FORM}` : `url must be a string, got ${jsonType(raw.url)}`);
  else {
    try {
      // Canonical form, because the server accepts only the three schemes (not socks5h).
      url = formatProxyUrl(parseProxyUrl(raw.url));
    } catch (err) {
      problems.push(`url ${(err as Error).message}`);
    }
  }

  let country = "";
  if (typeof raw.country === "string") {
    country = raw.country.trim().toUpperCase();
    if (country !== "" && !COUNTRY.test(country)) problems.push(`country ${quote(raw.country)} is not an ISO 3166 alpha-2 code; use two letters such as RU, or leave it empty`);
  } else if (raw.country != null) problems.push(`country must be a string like "RU", got ${jsonType(raw.country)}`);

  let provider = "";
  if (typeof raw.provider === "string") provider = raw.provider.trim();
  else if (raw.provider != null) problems.push(`provider must be a string, got ${jsonType(raw.provider)}`);

  let tags: string[] = [];
  // A string of tags separated by ";" (or "," inside a quoted CSV cell) is accepted everywhere, since a CSV cell cannot hold a list.
  if (typeof raw.tags === "string") tags = raw.tags.split(/[;,]/);
  else if (Array.isArray(raw.tags) && raw.tags.every((t) => typeof t === "string")) tags = raw.tags;
  else if (raw.tags != null) problems.push(`tags must be a list of strings like ["mobile","ru"] or "mobile;ru" (or "mobile,ru" quoted in CSV), got ${jsonType(raw.tags)}`);
  tags = [...new Set(tags.map((t) => t.trim()).filter((t) => t !== ""))];

  let capacity = 0;
  const capText = typeof raw.capacity === "string" ? raw.capacity.trim() : raw.capacity;
  if (capText != null && capText !== "") {
    const n = typeof capText === "number" ? capText : typeof capText === "string" && /^\d+$/.test(capText) ? Number(capText) : NaN;
    if (!Number.isInteger(n) || n < 0 || n > MAX_CAPACITY) {
      problems.push(`capacity ${quote(raw.capacity)} is not a whole number from 0 to ${MAX_CAPACITY}; it is how many accounts may share the proxy (0 or empty means 1)`);
    } else capacity = n;
  }

  if (problems.length > 0) return { line, error: `line ${line}: ${problems.join("; ")}` };
  return { line, item: { url, country, provider, tags, capacity } };
}

async function* readBare(lines: AsyncIterable<RawLine>): AsyncGenerator<ProxyImportLine> {
  for await (const l of lines) {
    if (l.tooLong) {
      yield { line: l.line, error: tooLongError(l.line) };
      continue;
    }
    const text = l.text.trim();
    // Comments let people annotate plain lists.
    if (text === "" || text.startsWith("#")) continue;
    yield validateProxy(l.line, { url: text, country: "", provider: "", tags: "", capacity: "" }, []);
  }
}

function parseCsvHeader(fields: string[]): { columns?: string[]; problem?: string } {
  const names = fields.map((f) => f.trim().toLowerCase());
  const unknown = names.filter((n) => !FIELDS.includes(n));
  const dup = names.filter((n, i) => names.indexOf(n) !== i);
  const problems: string[] = [];
  if (unknown.length > 0) problems.push(`unknown column${unknown.length > 1 ? "s" : ""} ${unknown.map((n) => quote(n)).join(", ")}`);
  if (dup.length > 0) problems.push(`duplicate column${dup.length > 1 ? "s" : ""} ${dup.map((n) => quote(n)).join(", ")}`);
  if (!names.includes("url")) problems.push("missing column url");
  return problems.length > 0 ? { problem: `${problems.join("; ")}; the first line must be a header such as ${CSV_HEADER}` } : { columns: names };
}

async function* readCsv(lines: AsyncIterable<RawLine>): AsyncGenerator<ProxyImportLine> {
  for await (const { line, columns, fields, error } of csvRows(lines, parseCsvHeader, 'separate tags with ";" and quote fields that contain commas')) {
    if (!columns || !fields) {
      yield { line, error };
      continue;
    }
    const raw: RawProxy = { url: "", country: "", provider: "", tags: "", capacity: "" };
    columns.forEach((c, i) => (raw[c as keyof RawProxy] = fields[i]));
    yield validateProxy(line, raw, []);
  }
}

async function* readJsonl(lines: AsyncIterable<RawLine>): AsyncGenerator<ProxyImportLine> {
  for await (const { line, obj, problems, error } of jsonlObjects(lines, FIELDS, JSONL_EXAMPLE)) {
    if (!obj) {
      yield { line, error };
      continue;
    }
    yield validateProxy(line, { url: obj.url, country: obj.country, provider: obj.provider, tags: obj.tags, capacity: obj.capacity }, problems);
  }
}

/**
 * Streams a proxies import file: JSONL (.jsonl/.ndjson, or a first line starting with "{"), CSV
 * with a header (.csv, or a first line whose first cell is "url"), otherwise one bare URL per line.
 */
export async function* readProxyImportFile(path: string): AsyncGenerator<ProxyImportLine> {
  const it = readLines(path)[Symbol.asyncIterator]();
  let format: "csv" | "jsonl" | "bare" | undefined = formatFromExtension(path);
  const head: RawLine[] = [];
  if (!format) {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      head.push(r.value);
      const t = r.value.text.trim();
      if (r.value.tooLong || (t !== "" && !t.startsWith("#"))) {
        format = t.startsWith("{") ? "jsonl" : /^"?url"?\s*(,|$)/i.test(t) ? "csv" : "bare";
        break;
      }
    }
  }
  const lines = prepend(head, it);
  if (format === "csv") yield* readCsv(lines);
  else if (format === "jsonl") yield* readJsonl(lines);
  else yield* readBare(lines);
}
