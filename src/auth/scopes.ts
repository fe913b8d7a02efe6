/**
 * Scopes name what a token may do: `<area>:read`, `<area>:write` or `<area>:admin` per service
 * area, where admin implies write and write implies read; `credentials:read` (decrypted
 * credentials) is separate and implied by nothing but `*`, which grants everything.
 */

/** The service areas scopes are granted for. */
export const SCOPE_AREAS = ["accounts", "proxies", "warming", "sms", "platforms"] as const;

const LEVELS = ["read", "write", "admin"] as const;

/** Every scope a token can be given. */
export const ALL_SCOPES: readonly string[] = [
  "*",
  "credentials:read",
  ...SCOPE_AREAS.flatMap((a) => LEVELS.map((l) => `${a}:${l}`)),
];

/** Throws a message listing the valid scopes when one is unknown. */
export function validateScopes(scopes: string[]): void {
  if (scopes.length === 0) throw new Error(`at least one scope is needed; valid scopes: ${ALL_SCOPES.join(", ")}`);
  for (const s of scopes) {
    if (!ALL_SCOPES.includes(s)) throw new Error(`unknown scope ${JSON.stringify(s)}; valid scopes: ${ALL_SCOPES.join(", ")}`);
  }
}

/** True when the granted scopes include the required one (directly or by implication). */
export function grants(granted: ReadonlySet<string>, required: string): boolean {
  if (granted.has("*") || granted.has(required)) return true;
  const [area, level] = required.split(":");
  if (area === "credentials") return false;
  const need = LEVELS.indexOf(level as (typeof LEVELS)[number]);
  return LEVELS.some((l, i) => i > need && granted.has(`${area}:${l}`));
}
