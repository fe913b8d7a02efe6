import type { ProxySpec } from "../gen/conveer/v1/proxy_pb.js";
import { invalidArgument, quote } from "../errors.ts";
import { parseProxyUrl } from "./proxy-url.ts";
import type { ParsedProxyUrl } from "./proxy-url.ts";

/** Validation of the pool's request fields, pure: each check throws INVALID_ARGUMENT naming the field. */

const COUNTRY = /^[A-Z]{2}$/;
const CONTROL = /[\x00-\x1f\x7f]/;
const MAX_TAGS = 32;

/** A free-text field: at most `max` characters and no control characters (PostgreSQL text cannot hold NUL). */
export function checkText(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidArgument(field, `must be at most ${max} characters, got ${value.length}`);
  if (CONTROL.test(value)) throw invalidArgument(field, "must not contain control characters");
  return value;
}

/** An optional ISO 3166 alpha-2 code, upper-cased; "" when empty. */
export function checkCountry(field: string, value: string): string {
  const country = value.trim().toUpperCase();
  if (country && !COUNTRY.test(country)) throw invalidArgument(field, `must be an ISO 3166 alpha-2 code like RU, got ${quote(value)}`);
  return country;
}

/** An AddProxies item, validated and normalized. */
export type CheckedSpec = ParsedProxyUrl & { country: string; provider: string; tags: string[]; capacity: number };

/** Parses the proxy URL of AddProxies item `index`; its error names the item's url field. */
export function parseSpecUrl(index: number, spec: ProxySpec): ParsedProxyUrl {
  try {
    return parseProxyUrl(spec.url);
  } catch (err) {
    throw invalidArgument(`proxies[${index}].url`, (err as Error).message);
  }
}

/** Validates the rest of AddProxies item `index` (its URL parsed already); errors name the item's field. */
export function checkSpec(index: number, spec: ProxySpec, parsed: ParsedProxyUrl): CheckedSpec {
  const prefix = `proxies[${index}]`;
  // Credentials the dialer could never send are refused now, not at the first health check.
  if (CONTROL.test(parsed.username)) throw invalidArgument(`${prefix}.url`, "username must not contain control characters");
  if (parsed.protocol === "socks5" && (Buffer.byteLength(parsed.username) > 255 || Buffer.byteLength(parsed.password) > 255)) {
    throw invalidArgument(`${prefix}.url`, "SOCKS5 username and password must each be at most 255 bytes");
  }
  if (parsed.protocol !== "socks5" && parsed.username.includes(":")) {
    throw invalidArgument(`${prefix}.url`, 'HTTP proxy username must not contain ":" (Basic auth cannot express it)');
  }
  if (Buffer.byteLength(parsed.username) > 1024 || Buffer.byteLength(parsed.password) > 1024) {
    throw invalidArgument(`${prefix}.url`, "username and password must each be at most 1024 bytes");
  }
  const country = checkCountry(`${prefix}.country`, spec.country);
  const provider = checkText(`${prefix}.provider`, spec.provider.trim(), 128);
  const tags = [...new Set(spec.tags.map((t, i) => checkText(`${prefix}.tags[${i}]`, t.trim(), 64)).filter((t) => t !== ""))];
  if (tags.length > MAX_TAGS) throw invalidArgument(`${prefix}.tags`, `must hold at most ${MAX_TAGS} tags, got ${tags.length}`);
  if (spec.capacity < 0 || spec.capacity > 10_000) throw invalidArgument(`${prefix}.capacity`, `must be between 1 and 10000 (0 means 1), got ${spec.capacity}`);
  return { ...parsed, country, provider, tags, capacity: spec.capacity || 1 };
}
