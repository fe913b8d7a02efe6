import type { Logger } from "pino";
import { isLoopback, splitHostPort } from "../config/config.ts";
import type { AuthSetting } from "../config/config.ts";
import type { Queryable } from "../store/db.ts";
import type { AuthenticatorMode } from "./tokens.ts";
import { anyTokens, tokensEverCreated } from "./tokens.ts";

/** One address this process listens on, and the variable that sets it (named in refusals). */
export type ListenAddr = { addr: string; env: string };

/** The auth mode a start settled on: what the authenticator runs, and what the log says. */
export type AuthDecision = { mode: AuthenticatorMode; summary: string };

const CREATE = "`conveer token create --name admin --scopes '*'`";

/**
 * Decides the auth mode at start from CONVEER_AUTH, the listen addresses (every gRPC port, the
 * HTTP port and an in-process sandbox) and the store; throws a message naming the fix when the
 * combination is unsafe, and logs the mode.
 *
 * - `open`: every call allowed; refused unless every address is loopback.
 * - `tokens`: never an anonymous call; with no active token it starts anyway and logs how to make one.
 * - `auto` (unset): open while the store has never had a token and every address is loopback
 *   (the first token created ends it for good); otherwise tokens. Beyond loopback with no active
 *   token it refuses to start, since nobody could call it.
 */
export async function decideAuthMode(db: Queryable, setting: AuthSetting, listen: readonly ListenAddr[], log: Logger): Promise<AuthDecision> {
  const wide = listen.filter((l) => !isLoopback(splitHostPort(l.addr).host));
  const wideList = wide.map((l) => `${l.addr} (${l.env})`).join(", ");
  let d: AuthDecision;
  if (setting === "open") {
    if (wide.length > 0) {
      throw new Error(
        `refusing to start: CONVEER_AUTH=open serves every call without a token, so every address must be loopback, and ${wideList} is not. ` +
          `Listen on 127.0.0.1, or create a token (${CREATE}) and unset CONVEER_AUTH`,
      );
    }
    d = { mode: "open", summary: "auth mode: open (CONVEER_AUTH=open): every call is allowed without a token; every port listens on loopback only" };
  } else if (setting === "tokens") {
    d = { mode: "tokens", summary: "auth mode: tokens (CONVEER_AUTH=tokens): every call needs a token" };
  } else if (wide.length === 0 && !(await tokensEverCreated(db))) {
    d = {
      mode: "auto",
      summary:
        "auth mode: open (automatic): no token was ever created and every port listens on loopback, so every call is allowed; " +
        `the first token created (${CREATE}) switches this and every later start to tokens, for good`,
    };
  } else {
    if (wide.length > 0 && !(await anyTokens(db))) {
      throw new Error(
        `refusing to start: no active API token exists and Conveer is asked to listen beyond loopback (${wideList}), so nobody could call it. ` +
          `Create one first: ${CREATE}, then send it as \`authorization: Bearer <token>\` (or set CONVEER_AUTH=tokens to start anyway)`,
      );
    }
    d = { mode: "tokens", summary: "auth mode: tokens (automatic: a token was created in this store, or a port listens beyond loopback): every call needs a token" };
  }
  if (d.mode === "tokens" && !(await anyTokens(db))) {
    log.warn(
      { auth: d.mode },
      `${d.summary}; no active token exists, so every call is refused until one is made: ${CREATE} ` +
        "(with PostgreSQL while the server runs; with the embedded store, stop the server first)",
    );
  } else if (d.mode === "tokens") {
    log.info({ auth: d.mode }, d.summary);
  } else {
    log.warn({ auth: d.mode === "open" ? "open" : "open-auto" }, d.summary);
  }
  return d;
}
