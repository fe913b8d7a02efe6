/**
 * Scopes name what a token may do: `<area>:read`, `<area>:write` or `<area>:admin` per service
 * area, where admin implies write and write implies read. Each kind of secret has a scope of its
 * own, implied by nothing but `*` (which grants everything): `credentials:read` (decrypted account
 * credentials) and `proxies:secrets` (proxy passwords in AllocateProxy, GetProxyForAccount and
 * ForceRotate answers). `admin` (AdminService: tokens, the audit log, key rotation) is implied
 * only by `*` too.
 */

/** The service areas scopes are granted for. */
export const SCOPE_AREAS = ["accounts", "proxies", "warming", "sms", "platforms"] as const;

const LEVELS = ["read", "write", "admin"] as const;

/** The scopes that reveal secrets: each granted only by itself or `*`, and every use audited. */
export const SECRET_SCOPES: readonly string[] = ["credentials:read", "proxies:secrets"];

/** Administering the system itself (AdminService): implied by nothing but `*`. */
export const ADMIN_SCOPE = "admin";

/** The pseudo-scope of a method any authenticated caller may call (WhoAmI); never granted, always held. */
export const ANY_CALLER = "(any caller)";

/** Every scope a token can be given. */
export const ALL_SCOPES: readonly string[] = [
  "*",
  ...SECRET_SCOPES,
  ADMIN_SCOPE,
  ...SCOPE_AREAS.flatMap((a) => LEVELS.map((l) => `${a}:${l}`)),
];

/** Throws a message listing the valid scopes when one is unknown; it reads after "scopes " (the field it is reported under). */
export function validateScopes(scopes: string[]): void {
  if (scopes.length === 0) throw new Error(`must name at least one scope; valid scopes: ${ALL_SCOPES.join(", ")}`);
  for (const s of scopes) {
    if (!ALL_SCOPES.includes(s)) throw new Error(`has an unknown scope ${JSON.stringify(s)}; valid scopes: ${ALL_SCOPES.join(", ")}`);
  }
}

/** True when the granted scopes include the required one (directly or by implication). */
export function grants(granted: ReadonlySet<string>, required: string): boolean {
  if (required === ANY_CALLER || granted.has("*") || granted.has(required)) return true;
  const [area, level] = required.split(":");
  const need = LEVELS.indexOf(level as (typeof LEVELS)[number]);
  // A secret scope, `admin` (no level) or any level that is not read/write/admin is implied by nothing else.
  if (need < 0 || SECRET_SCOPES.includes(required)) return false;
  return LEVELS.some((l, i) => i > need && granted.has(`${area}:${l}`));
}
