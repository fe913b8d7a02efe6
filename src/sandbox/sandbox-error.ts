/**
 * The one error the sandbox's rules throw: a closed set of codes, mapped to HTTP statuses in one
 * place (http.ts `statusOf`). Also the checks of request input (a JSON object) that throw it.
 */
import { quote } from "../errors.ts";

/** Why a sandbox operation was refused; http.ts maps each to a status and the `error` field of the answer. */
export type SandboxErrorCode =
  | "invalid" | "body_too_large" | "key_reused" | "unknown_service" | "wrong_code"
  | "unauthorized" | "access_denied" | "insufficient_balance" | "banned" | "suspended" | "not_found"
  | "login_taken" | "already_confirmed" | "no_numbers" | "expired" | "rate_limited" | "unavailable";

/** A refused sandbox operation; `retryAfterMs` is set on rate_limited. */
export class SandboxError extends Error {
  code: SandboxErrorCode;
  retryAfterMs: number;
  constructor(code: SandboxErrorCode, message: string, retryAfterMs = 0) {
    super(message);
    this.name = "SandboxError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** An invalid-input refusal. */
export const bad = (message: string) => new SandboxError("invalid", message);
/** A not-found refusal naming what and which. */
export const missing = (what: string, id: string) => new SandboxError("not_found", `${what} ${quote(id)} not found`);

/** A request's input: its JSON object body. */
export type Body = Record<string, unknown>;

/** obj[key] when it is obj's own property (ids come from URLs: "constructor" must not resolve). */
export const own = <T>(obj: Record<string, T>, key: string): T | undefined => (Object.hasOwn(obj, key) ? obj[key] : undefined);

/** body[key] as a string ("" when absent), at most `max` (default 256) characters; `required`: not empty. */
export function str(body: Body, key: string, opts: { required?: boolean; max?: number } = {}): string {
  const v = body[key] ?? "";
  if (typeof v !== "string") throw bad(`${key} must be a string`);
  if (opts.required && !v) throw bad(`${key} is required`);
  if (v.length > (opts.max ?? 256)) throw bad(`${key} is longer than ${opts.max ?? 256} characters`);
  return v;
}
