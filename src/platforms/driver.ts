import type { Platform } from "../domain.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";

/**
 * The only way Conveer reaches a platform. The project ships one implementation: the sandbox
 * driver (src/sandbox/sandbox-driver.ts), talking to the local simulated platform. A platform with
 * no driver bound answers FAILED_PRECONDITION.
 */

/** The eight actions of the seed's ActionType, as drivers name them. */
export const ACTION_KINDS = ["view_profile", "like_post", "subscribe", "comment", "send_message", "repost", "view_stories", "add_friend"] as const;
/** One action kind. */
export type ActionKind = (typeof ACTION_KINDS)[number];

/** A logged-in identity on the platform. */
export type DriverSession = { userId: string; sessionToken: string };

/** What sign-up needs. `fields` carries platform-specific extras (RegisterRequest.platform_fields). */
export type SignUpInput = { login: string; password: string; phone: string; firstName: string; lastName: string; fields: Record<string, string> };

/** Per-call context: the account's proxy (the driver must connect through it when given) and cancellation. */
export type DriverContext = { proxy?: ProxyEndpoint; signal?: AbortSignal };

/** The account's standing as the platform reports it. */
export type PlatformAccountStatus = { status: "active" | "banned" | "suspended"; reason: string };

/** What went wrong, in terms the services map to status codes. */
export type DriverErrorKind =
  | "rate_limited" // RESOURCE_EXHAUSTED, retry after retryAfterMs
  | "banned" // FAILED_PRECONDITION; the account's status follows
  | "suspended" // FAILED_PRECONDITION; the account's status follows
  | "invalid" // INVALID_ARGUMENT (bad params, login taken, …)
  | "not_found" // NOT_FOUND (target post/user/group does not exist)
  | "unauthorized" // session expired or wrong password
  | "wrong_code" // confirmation code rejected
  | "expired" // sign-up expired
  | "unavailable"; // the platform is down or failed: retryable

/** A driver failure with a kind the services can act on. */
export class DriverError extends Error {
  readonly kind: DriverErrorKind;
  readonly retryAfterMs: number;
  constructor(kind: DriverErrorKind, message: string, retryAfterMs = 0) {
    super(message);
    this.name = "DriverError";
    this.kind = kind;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A platform driver. */
export interface PlatformDriver {
  readonly platform: Platform;
  /** Starts sign-up; the platform sends a confirmation code by SMS to input.phone. */
  startSignUp(input: SignUpInput, ctx: DriverContext): Promise<{ signupId: string }>;
  /** Confirms sign-up with the code; the account exists and is logged in afterwards. */
  confirmSignUp(signupId: string, code: string, ctx: DriverContext): Promise<DriverSession>;
  /** Logs in with login and password (when a stored session has expired). */
  login(login: string, password: string, ctx: DriverContext): Promise<DriverSession>;
  /** Runs one action; `data` carries what the platform answered (e.g. target_id, post_id). */
  execute(action: ActionKind, params: Record<string, string>, session: DriverSession, ctx: DriverContext): Promise<{ data: Record<string, string> }>;
  /** The account's standing on the platform. */
  accountStatus(session: DriverSession, ctx: DriverContext): Promise<PlatformAccountStatus>;
}
