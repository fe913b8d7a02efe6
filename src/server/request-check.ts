import { ScalarType } from "@bufbuild/protobuf";
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { invalidArgument, quote } from "../errors.ts";
import type { AppError } from "../errors.ts";

/**
 * The one check every request passes before its handler runs, whatever the transport (grpc-js
 * ports, the in-process local client, and the HTTP/Connect port when it comes): a walk over the
 * decoded message that refuses, as INVALID_ARGUMENT naming the field,
 *
 * - a string (a field, a list item, a map key or value) longer than its maximum: MAX_STRING_CHARS,
 *   or the larger maximum STRING_LIMITS gives the few fields that legitimately hold more;
 * - a string holding NUL (U+0000), which PostgreSQL text and jsonb cannot store;
 * - a google.protobuf.Timestamp outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, or a
 *   google.protobuf.Duration outside ±10,000 years (the ranges the protobuf spec defines; both
 *   fit PostgreSQL's timestamptz and interval and JavaScript's Date), or either with bad nanos.
 *
 * So a domain's own validation only ever sees bounded values, an error message can never repeat a
 * megabyte of input, and no out-of-range time reaches SQL.
 */

/** The default maximum length of a request string, in characters (UTF-16 code units, as JavaScript counts). */
export const MAX_STRING_CHARS = 1024;

/**
 * Fields allowed longer strings: "<message type>.<field name>" → maximum characters. For a map
 * the maximum applies to each value (keys keep the default); for a list, to each item. A nested
 * message keeps its limits wherever it appears (ImportAccounts' items are CreateAccountRequests).
 */
export const STRING_LIMITS: Readonly<Record<string, number>> = {
  // Account credentials: passwords may be app passwords or tokens; `additional` holds session
  // tokens, cookies, user agents and device profiles.
  "conveer.CreateAccountRequest.password": 4096,
  "conveer.CreateAccountRequest.additional": 65_536,
  "conveer.UpdateCredentialsRequest.password": 4096,
  "conveer.UpdateCredentialsRequest.additional": 65_536,
  // Register: the password becomes the account's (the same limit as CreateAccount's); platform
  // fields may carry a user agent or a profile text.
  "conveer.RegisterRequest.password": 4096,
  "conveer.RegisterRequest.platform_fields": 4096,
  // An action's parameters: the text of a comment or a message.
  "conveer.ExecuteActionRequest.params": 4096,
  // A proxy URL: scheme, host (up to 253) and port, plus a username and a password of up to 1,024 bytes each.
  "conveer.ProxySpec.url": 4096,
};

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in seconds since the epoch: google.protobuf.Timestamp's range. */
export const TIMESTAMP_SECONDS = { min: -62_135_596_800n, max: 253_402_300_799n } as const;
/** ±10,000 years in seconds: google.protobuf.Duration's range. */
export const DURATION_MAX_SECONDS = 315_576_000_000n;

/** The maximum length of the string field `f` (each value of a map, each item of a list). */
export function stringLimit(f: DescField): number {
  return STRING_LIMITS[`${f.parent.typeName}.${f.name}`] ?? MAX_STRING_CHARS;
}

/** Throws INVALID_ARGUMENT naming the first field of `msg` (of type `desc`) that breaks a rule above. */
export function checkRequest(desc: DescMessage, msg: object): void {
  const problem = messageProblem(desc, msg as Record<string, unknown>, "");
  if (problem) throw problem;
}

/**
 * What is wrong with a Timestamp or Duration value (`seconds`, `nanos`), as "<sub-field> <problem>",
 * or undefined when it is in range, or when `typeName` is neither.
 */
export function timeProblem(typeName: string, v: { seconds: bigint; nanos: number }): { field: string; problem: string } | undefined {
  if (typeName === "google.protobuf.Timestamp") {
    if (v.seconds < TIMESTAMP_SECONDS.min || v.seconds > TIMESTAMP_SECONDS.max) {
      return { field: "seconds", problem: `must be a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z (seconds ${TIMESTAMP_SECONDS.min} to ${TIMESTAMP_SECONDS.max}), got ${v.seconds}` };
    }
    if (!Number.isInteger(v.nanos) || v.nanos < 0 || v.nanos > 999_999_999) return { field: "nanos", problem: `must be from 0 to 999999999, got ${v.nanos}` };
    return undefined;
  }
  if (typeName === "google.protobuf.Duration") {
    if (v.seconds < -DURATION_MAX_SECONDS || v.seconds > DURATION_MAX_SECONDS) {
      return { field: "seconds", problem: `must be within ±10000 years (±${DURATION_MAX_SECONDS} seconds), got ${v.seconds}` };
    }
    if (!Number.isInteger(v.nanos) || v.nanos < -999_999_999 || v.nanos > 999_999_999) return { field: "nanos", problem: `must be from -999999999 to 999999999, got ${v.nanos}` };
    if ((v.seconds > 0n && v.nanos < 0) || (v.seconds < 0n && v.nanos > 0)) return { field: "nanos", problem: `must have the sign of seconds (${v.seconds}), got ${v.nanos}` };
    return undefined;
  }
  return undefined;
}

function stringProblem(v: string, max: number, path: string): AppError | undefined {
  // Length first: a huge value is refused without being scanned.
  if (v.length > max) return invalidArgument(path, `must be at most ${max} characters, got ${v.length}`);
  if (v.includes("\u0000")) return invalidArgument(path, "must not contain NUL (U+0000) characters");
  return undefined;
}

function valueProblem(f: DescField, kind: "scalar" | "enum" | "message", v: unknown, path: string): AppError | undefined {
  if (kind === "message") {
    if (!v || typeof v !== "object") return undefined;
    const time = timeProblem(f.message!.typeName, v as { seconds: bigint; nanos: number });
    if (time) return invalidArgument(`${path}.${time.field}`, time.problem);
    return messageProblem(f.message!, v as Record<string, unknown>, `${path}.`);
  }
  if (kind === "scalar" && f.scalar === ScalarType.STRING && typeof v === "string") return stringProblem(v, stringLimit(f), path);
  return undefined;
}

function messageProblem(desc: DescMessage, msg: Record<string, unknown>, prefix: string): AppError | undefined {
  for (const f of desc.fields) {
    let v: unknown;
    if (f.oneof) {
      const o = msg[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (o?.case !== f.localName) continue;
      v = o.value;
    } else v = msg[f.localName];
    if (v === undefined || v === null) continue;
    const path = `${prefix}${f.name}`;
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
      case "message": {
        const hit = valueProblem(f, f.fieldKind, v, path);
        if (hit) return hit;
        break;
      }
      case "list": {
        const items = v as unknown[];
        for (let i = 0; i < items.length; i++) {
          const hit = valueProblem(f, f.listKind, items[i], `${path}[${i}]`);
          if (hit) return hit;
        }
        break;
      }
      case "map":
        for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
          if (f.mapKey === ScalarType.STRING) {
            const hit = stringProblem(k, MAX_STRING_CHARS, `${path} (a key)`);
            if (hit) return hit;
          }
          const hit = valueProblem(f, f.mapKind, item, `${path}[${quote(k)}]`);
          if (hit) return hit;
        }
        break;
    }
  }
  return undefined;
}
