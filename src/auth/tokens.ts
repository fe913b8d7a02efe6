import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { AppError, badRequest, invalidArgument, quote } from "../errors.ts";
import type { Db, Queryable } from "../store/db.ts";
import { grants, validateScopes } from "./scopes.ts";

/** Who is calling: a token's name and scopes, or the open (token-less, loopback-only) mode. */
export type Principal = Readonly<{ name: string; scopes: ReadonlySet<string>; open: boolean }>;

/** The principal of anonymous calls in open mode (CONVEER_AUTH=open, or no token ever made; loopback only). */
export const OPEN_PRINCIPAL: Principal = Object.freeze({ name: "open-mode", scopes: new Set(["*"]), open: true });

/** A principal for the system's own work (background jobs, migrations, CLI admin commands). */
export function systemPrincipal(name: string): Principal {
  return Object.freeze({ name, scopes: new Set(["*"]), open: false });
}

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** Creates a token; returns the secret, which is shown once and stored only as a hash. */
export async function createToken(db: Queryable, id: string, name: string, scopes: string[]): Promise<string> {
  if (!/^[\w.@-]{1,64}$/.test(name)) {
    const problem = `must be 1-64 letters, digits, or . _ @ -; got ${quote(name)}`;
    throw new AppError("INVALID_ARGUMENT", `token name ${problem}`, { details: [badRequest("name", problem)] });
  }
  try {
    validateScopes(scopes);
  } catch (err) {
    throw invalidArgument("scopes", (err as Error).message);
  }
  const token = `cv_${randomBytes(24).toString("base64url")}`;
  try {
    await db.query("INSERT INTO api_tokens (id, name, token_hash, scopes) VALUES ($1, $2, $3, $4)", [id, name, hashToken(token), scopes]);
  } catch (err) {
    if ((err as { code?: string }).code === "23505") throw new AppError("ALREADY_EXISTS", `a token named ${JSON.stringify(name)} already exists (names stay taken after a revoke); pick another name`);
    throw err;
  }
  return token;
}

/** Revokes a token by name; false when there was none. */
export async function revokeToken(db: Queryable, name: string): Promise<boolean> {
  const r = await db.query("UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", [name]);
  return r.rowCount > 0;
}

/** A token as listed: never its secret nor its hash. */
export type TokenRow = { name: string; scopes: string[]; created_at: Date; revoked_at: Date | null };

/** Lists tokens (never their secrets), oldest first; only `name` when given. */
export async function listTokens(db: Queryable, name?: string): Promise<TokenRow[]> {
  const r = await db.query<TokenRow>(
    `SELECT name, scopes, created_at, revoked_at FROM api_tokens ${name === undefined ? "" : "WHERE name = $1"} ORDER BY created_at, name`,
    name === undefined ? [] : [name],
  );
  return r.rows;
}

/** True when at least one unrevoked token exists. */
export async function anyTokens(db: Queryable): Promise<boolean> {
  const r = await db.query("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL LIMIT 1");
  return r.rowCount > 0;
}

/**
 * True once the store has ever held a token, revoked, deleted or not (a flag a trigger sets on
 * the first insert into api_tokens). A store whose flag row is missing counts as having had one:
 * the question decides whether a server may run open, so a damaged answer closes it.
 */
export async function tokensEverCreated(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ever: boolean }>(
    "SELECT coalesce((SELECT first_token_at IS NOT NULL FROM auth_state), true) OR EXISTS (SELECT 1 FROM api_tokens) AS ever",
  );
  return r.rows[0]?.ever !== false;
}

/**
 * How anonymous calls are treated: "open" lets every one in, "tokens" none, "auto" lets them in
 * only until the store has ever had a token (then never again, whatever is revoked). The start-up
 * check (auth-mode.ts) picks the mode and makes sure open ones listen on loopback only.
 */
export type AuthenticatorMode = "open" | "tokens" | "auto";

/** Options for the authenticator. */
export type AuthenticatorOptions = { db: Db; mode: AuthenticatorMode; cacheMs?: number; now?: () => number };

/** Checks bearer tokens against the store, with a short cache so a hot path costs no query. */
export type Authenticator = {
  /** Resolves the `authorization` header to a principal, or throws UNAUTHENTICATED. */
  authenticate(authorization: string | undefined): Promise<Principal>;
  /** Throws PERMISSION_DENIED unless the principal holds the scope. */
  authorize(p: Principal, scope: string, method: string): void;
  /** True while an anonymous call would be let in (mode "open", or "auto" before any token). */
  isOpen(): Promise<boolean>;
  /** Tells it a token was just created through this process (AdminService): an "auto" mode closes at once, not after the cache. */
  tokenCreated?(): void;
};

/**
 * Creates the authenticator. Revocations, and the first token created (which ends an "auto"
 * open mode for good), take effect within `cacheMs` (default 5 s) on every replica.
 */
export function createAuthenticator(opts: AuthenticatorOptions): Authenticator {
  const cacheMs = opts.cacheMs ?? 5000;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { p: Principal | null; at: number }>();
  // "auto": open until a token is seen; once seen, closed without asking the store again.
  let closedForGood = opts.mode === "tokens";
  let everCache: { at: number } | undefined;

  async function isOpen(): Promise<boolean> {
    if (opts.mode === "open") return true;
    if (closedForGood) return false;
    if (everCache && now() - everCache.at <= cacheMs) return true;
    if (await tokensEverCreated(opts.db)) {
      closedForGood = true;
      return false;
    }
    everCache = { at: now() };
    return true;
  }

  async function lookup(token: string): Promise<Principal | null> {
    const h = hashToken(token);
    const hit = cache.get(h);
    if (hit && now() - hit.at <= cacheMs) return hit.p;
    const r = await opts.db.query<{ name: string; scopes: string[]; token_hash: string }>(
      "SELECT name, scopes, token_hash FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
      [h],
    );
    const row = r.rows[0];
    const p =
      row && timingSafeEqual(Buffer.from(row.token_hash), Buffer.from(h))
        ? Object.freeze({ name: row.name, scopes: new Set(row.scopes), open: false })
        : null;
    if (cache.size > 10_000) cache.clear();
    cache.set(h, { p, at: now() });
    // A valid token proves the store has had one: an "auto" server closes at once.
    if (p) closedForGood = true;
    return p;
  }

  return {
    async authenticate(authorization) {
      const m = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization.trim()) : null;
      if (m) {
        const p = await lookup(m[1]);
        if (p) return p;
        throw new AppError("UNAUTHENTICATED", "the bearer token is unknown or revoked; create one with `conveer token create --name NAME --scopes ...`");
      }
      if (authorization) throw new AppError("UNAUTHENTICATED", 'the authorization header must be "Bearer <token>"');
      if (await isOpen()) return OPEN_PRINCIPAL;
      throw new AppError("UNAUTHENTICATED", 'this call needs a token: send the header "authorization: Bearer <token>" (create one with `conveer token create`)');
    },
    authorize(p, scope, method) {
      if (!grants(p.scopes, scope)) {
        throw new AppError("PERMISSION_DENIED", `token ${JSON.stringify(p.name)} lacks scope ${JSON.stringify(scope)} needed by ${method}`);
      }
    },
    isOpen,
    tokenCreated: () => void (closedForGood = true),
  };
}
