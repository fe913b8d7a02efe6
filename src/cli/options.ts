import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { timestampFromDate, timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { PLATFORMS, isPlatform } from "../domain.ts";
import type { Platform } from "../domain.ts";

/**
 * Parsers for the CLI's option values and small helpers the command files share. A parser throws
 * InvalidArgumentError: commander prints it after the option's name and the CLI exits 2.
 */

/** The subcommand group `name` of program, made on first use (`accounts import` and `accounts list` live in different files). */
export function commandGroup(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

/** A whole number from min to max. */
export function intBetween(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
}

/** A platform name. */
export function platformName(v: string): Platform {
  if (!isPlatform(v)) throw new InvalidArgumentError(`must be one of ${PLATFORMS.join(", ")}, got ${JSON.stringify(v)}`);
  return v;
}

/** A repeatable `key=value` (commander's collector form). */
export function labelSelector(v: string, previous: string[] = []): string[] {
  if (!/^[^=\s]+=[^=]*$/.test(v)) throw new InvalidArgumentError(`must be key=value, e.g. --label team=red (repeat the option for more labels), got ${JSON.stringify(v)}`);
  return [...previous, v];
}

/**
 * An enum value by its short name ("active") or full name ("ACCOUNT_STATUS_ACTIVE"); the
 * UNSPECIFIED member is never accepted. The generated enum's keys may keep the prefix
 * (SMSStatus.SMS_STATUS_PENDING) or not (AccountStatus.ACTIVE): both work.
 */
export function enumValue<E extends Record<string, string | number>>(e: E, prefix: string): (v: string) => E[keyof E] {
  const strip = (k: string) => shortName(k, prefix);
  const byName = new Map(Object.keys(e).filter((k) => Number.isNaN(Number(k))).map((k) => [strip(k), e[k as keyof E]] as const));
  byName.delete("UNSPECIFIED");
  const names = [...byName.keys()];
  return (v) => {
    const key = strip(v.trim().toUpperCase());
    if (!byName.has(key)) throw new InvalidArgumentError(`must be one of ${names.join(", ")} (any case), got ${JSON.stringify(v)}`);
    return byName.get(key)!;
  };
}

/** An enum name without its prefix: "ACCOUNT_STATUS_ACTIVE" → "ACTIVE" (a name without it is as it is). */
export function shortName(name: string, prefix: string): string {
  return prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

/** The short name of an enum value ("ACTIVE"; without `prefix` where the key keeps it), or the number when unknown. */
export function enumName(e: Record<number, string>, v: number, prefix = ""): string {
  const name = e[v];
  return name === undefined ? String(v) : shortName(name, prefix);
}

/** A time: an ISO 8601 date or date-time ("2026-11-30", "2026-11-30T18:00:00Z"), or a duration ago ("90m", "24h", "7d"). */
export function timeValue(v: string): Timestamp {
  const ago = /^(\d+)(s|m|h|d)$/.exec(v.trim());
  if (ago) return timestampFromDate(new Date(Date.now() - Number(ago[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as "s"]));
  const t = /^\d{4}-\d\d-\d\d([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(v.trim()) ? new Date(v.trim()) : new Date(NaN);
  if (Number.isNaN(t.getTime())) throw new InvalidArgumentError(`must be an ISO 8601 time (2026-11-30 or 2026-11-30T18:00:00Z) or a duration ago (90m, 24h, 7d), got ${JSON.stringify(v)}`);
  return timestampFromDate(t);
}

/** A timestamp for a table cell: ISO 8601, or "" when unset. */
export function timeText(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString() : "";
}

/**
 * Every item of a paged listing, page by page (one page in memory at a time), up to `limit`.
 * `fetch` asks for at most `size` items after `token`.
 */
export async function* pages<T>(fetch: (token: string, size: number) => Promise<{ items: T[]; next: string }>, pageSize: number, limit = Infinity): AsyncGenerator<T[]> {
  let token = "";
  let seen = 0;
  do {
    const page = await fetch(token, Math.min(pageSize, limit - seen));
    const items = page.items.slice(0, limit - seen);
    seen += items.length;
    if (items.length > 0) yield items;
    token = page.next;
  } while (token && seen < limit);
}

/** All items of a paged listing up to `limit` (a listing command prints them as one table). */
export async function collect<T>(it: AsyncIterable<T[]>): Promise<T[]> {
  const out: T[] = [];
  for await (const page of it) out.push(...page);
  return out;
}

/** Parses a batch id (`--batch`): what RegisterRequest.batch_id takes. */
export function batchId(v: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(v)) throw new InvalidArgumentError(`must be 1-64 letters, digits, . _ or -, got ${JSON.stringify(v)}`);
  return v;
}
