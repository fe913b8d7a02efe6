/**
 * Whether a token's scopes allow an action. A copy of the server's rule (src/auth/scopes.ts), kept
 * here as data because the console shares nothing with the server but src/gen: `<area>:admin`
 * implies write, write implies read; the secret scopes (credentials:read, proxies:secrets) are
 * implied by nothing but `*`. The server still decides: this only greys out buttons.
 */
const LEVELS = ["read", "write", "admin"];
const SECRET_SCOPES = ["credentials:read", "proxies:secrets"];

/** True when `granted` includes `required` directly or by implication. */
export function grants(granted: readonly string[], required: string): boolean {
  if (granted.includes("*") || granted.includes(required)) return true;
  const [area, level] = required.split(":");
  const need = LEVELS.indexOf(level);
  if (need < 0 || SECRET_SCOPES.includes(required)) return false;
  return LEVELS.some((l, i) => i > need && granted.includes(`${area}:${l}`));
}

/** The scopes a token can be given, in the server's order (src/auth/scopes.ts ALL_SCOPES; a test checks they agree). */
export const TOKEN_SCOPES: readonly string[] = ["*", ...SECRET_SCOPES, "admin", ...["accounts", "proxies", "warming", "sms", "platforms"].flatMap((a) => LEVELS.map((l) => `${a}:${l}`))];
