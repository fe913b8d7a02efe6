import { invalidArgument } from "./errors.ts";

/**
 * Opaque keyset page tokens: the last key seen plus a fingerprint of the filter, so a token is
 * refused (not silently misapplied) when the filter changes between pages.
 */
export function encodePageToken(lastKey: string, filter: unknown): string {
  return Buffer.from(JSON.stringify({ k: lastKey, f: JSON.stringify(filter) })).toString("base64url");
}

/** Decodes a page token for the same filter; "" for the first page; INVALID_ARGUMENT otherwise. */
export function decodePageToken(token: string, filter: unknown): string {
  if (!token) return "";
  try {
    const v = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { k?: unknown; f?: unknown };
    if (typeof v.k === "string" && v.f === JSON.stringify(filter)) return v.k;
  } catch {
    // fall through to the error below
  }
  throw invalidArgument("page_token", "is not a token this listing returned with the same filter; start again with an empty page_token");
}

/** Validates page_size: 0 means the default; otherwise 1..max. */
export function pageSize(n: number, def = 100, max = 1000): number {
  if (n === 0) return def;
  if (!Number.isInteger(n) || n < 1 || n > max) throw invalidArgument("page_size", `must be between 1 and ${max}, got ${n}`);
  return n;
}
