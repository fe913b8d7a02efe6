import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { ActionType, CheckAccountStatusResponseSchema, ExecuteActionResponseSchema } from "../gen/conveer/v1/platform_pb.js";
import type { CheckAccountStatusResponse, ExecuteActionResponse } from "../gen/conveer/v1/platform_pb.js";
import type { Platform } from "../domain.ts";
import { AppError, invalidArgument } from "../errors.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";
import { checkId } from "../store/ids.ts";
import { ACTION_KINDS, DriverError } from "./driver.ts";
import type { DriverContext, DriverSession, PlatformAccountStatus, PlatformDriver } from "./driver.ts";
import { driverFor, endpoint } from "./platforms-context.ts";
import type { PlatformsContext } from "./platforms-context.ts";

/** What runs on an existing account through its driver: actions and status checks, signed in with the account's stored session and proxy. */

/** A driver failure as the status the client should see. */
export function driverFailure(err: DriverError, platform: Platform): AppError {
  switch (err.kind) {
    case "rate_limited":
      // The platform's Retry-After (DriverError.retryAfterMs) goes to the client as RetryInfo too.
      return new AppError("RESOURCE_EXHAUSTED", `${platform} rate-limited this account; retry after ${Math.ceil(err.retryAfterMs / 1000)} s`, { reason: "RATE_LIMITED", metadata: { platform }, retryAfterMs: err.retryAfterMs });
    case "invalid":
      return new AppError("INVALID_ARGUMENT", err.message);
    case "not_found":
      return new AppError("NOT_FOUND", err.message);
    case "banned":
    case "suspended":
      return new AppError("FAILED_PRECONDITION", `account is ${err.kind} on ${platform}: ${err.message}`, { reason: err.kind === "banned" ? "ACCOUNT_BANNED" : "ACCOUNT_SUSPENDED", metadata: { platform } });
    case "unauthorized":
      // Reached only when logging in again with the stored password failed: retrying cannot help.
      return new AppError("FAILED_PRECONDITION", `${platform} refused the account's login or password: ${err.message}; set the right password with UpdateCredentials, then CheckAccountStatus`, { reason: "INVALID_CREDENTIALS", metadata: { platform } });
    default:
      return new AppError("UNAVAILABLE", `${platform} is unavailable: ${err.message}`, { reason: "PLATFORM_UNAVAILABLE", metadata: { platform } });
  }
}

function mapDriverError(err: unknown, platform: Platform): never {
  if (!(err instanceof DriverError)) throw err;
  throw driverFailure(err, platform);
}

/**
 * The status AccountService should record after a driver failure of an action or check, and why:
 * BANNED or SUSPENDED as the platform reports; SUSPENDED when the platform refuses the stored
 * login or password of an ACTIVE or WARMING account (no action runs until the credentials are
 * fixed and a check brings it back to ACTIVE); undefined for any other failure, for a DELETED
 * account, or when it already holds.
 */
export function statusAfterFailure(current: AccountStatus, err: DriverError, platform: Platform): { status: AccountStatus; reason: string } | undefined {
  let status: AccountStatus;
  let reason: string;
  if (err.kind === "banned" || err.kind === "suspended") {
    status = err.kind === "banned" ? AccountStatus.BANNED : AccountStatus.SUSPENDED;
    reason = `${platform} reports ${err.kind}: ${err.message}`;
  } else if (err.kind === "unauthorized" && (current === AccountStatus.ACTIVE || current === AccountStatus.WARMING)) {
    status = AccountStatus.SUSPENDED;
    reason = `${platform} refused the stored login or password: ${err.message}`;
  } else return undefined;
  if (current === status || current === AccountStatus.DELETED) return undefined;
  return { status, reason: reason.slice(0, 1000) };
}

/** Records statusAfterFailure on AccountService; a failure to record is logged, the call's own error wins. */
async function recordFailure(ctx: PlatformsContext, acc: { id: string; status: AccountStatus }, err: unknown, platform: Platform): Promise<void> {
  const next = err instanceof DriverError ? statusAfterFailure(acc.status, err, platform) : undefined;
  if (!next) return;
  await ctx.peers.accounts.updateStatus({ accountId: acc.id, ...next }).catch((e) => ctx.log.warn({ err: String(e) }, "could not record the platform's status"));
}

/**
 * The status AccountService should record after the platform reported `reported`: BANNED or
 * SUSPENDED as reported, back to ACTIVE once the platform no longer says so; undefined when the
 * status stays (a DELETED account is never revived).
 */
export function statusAfterCheck(current: AccountStatus, reported: PlatformAccountStatus["status"]): AccountStatus | undefined {
  const want = reported === "banned" ? AccountStatus.BANNED : reported === "suspended" ? AccountStatus.SUSPENDED : undefined;
  const target = want ?? (current === AccountStatus.BANNED || current === AccountStatus.SUSPENDED ? AccountStatus.ACTIVE : undefined);
  return target !== undefined && target !== current && current !== AccountStatus.DELETED ? target : undefined;
}

async function proxyOf(ctx: PlatformsContext, accountId: string, platform: Platform): Promise<ProxyEndpoint> {
  try {
    return endpoint(await ctx.peers.proxies.getProxyForAccount({ accountId }));
  } catch (err) {
    if (!(err instanceof ConnectError) || err.code !== Code.NotFound) throw err;
    return endpoint(await ctx.peers.proxies.allocateProxy({ accountId, platform }));
  }
}

/**
 * The account's stored session, credentials and proxy (read at once: one round of peer calls),
 * and a runner that, when the session has expired, logs in again once and keeps the new session.
 */
async function signIn(ctx: PlatformsContext, driver: PlatformDriver, accountId: string, platform: Platform, signal?: AbortSignal) {
  const { peers } = ctx;
  const [cred, proxy] = await Promise.all([peers.accounts.getCredentials({ accountId }), proxyOf(ctx, accountId, platform)]);
  const dc: DriverContext = { proxy, signal };
  let session: DriverSession = { userId: cred.additional.platform_user_id ?? "", sessionToken: cred.additional.session_token ?? "" };
  return {
    async run<T>(fn: (session: DriverSession, dc: DriverContext) => Promise<T>): Promise<T> {
      try {
        return await fn(session, dc);
      } catch (err) {
        if (!(err instanceof DriverError && err.kind === "unauthorized")) throw err;
        session = await driver.login(cred.login, cred.password, dc);
        await peers.accounts.updateCredentials({ accountId, additional: { session_token: session.sessionToken, platform_user_id: session.userId } });
        return fn(session, dc);
      }
    },
  };
}

/** Runs one action with the account's credentials and proxy. */
export async function execute(ctx: PlatformsContext, platform: Platform, accountId: string, actionType: ActionType, params: Record<string, string>, signal?: AbortSignal): Promise<ExecuteActionResponse> {
  const driver = driverFor(ctx, platform);
  checkId(accountId, "account_id");
  const kind = ACTION_KINDS[actionType - 1];
  if (!kind) throw invalidArgument("action_type", `must be one of ${ACTION_KINDS.map((_, i) => ActionType[i + 1]).join(", ")}, got ${actionType}`);
  const acc = await ctx.peers.accounts.getAccount({ accountId });
  if (acc.platform !== platform) throw new AppError("FAILED_PRECONDITION", `account ${accountId} is on ${acc.platform}, not ${platform}; call the ${acc.platform} service`);
  if (acc.status !== AccountStatus.ACTIVE && acc.status !== AccountStatus.WARMING) {
    throw new AppError("FAILED_PRECONDITION", `account ${accountId} is ${AccountStatus[acc.status]}; actions need ACTIVE or WARMING`, { reason: "ACCOUNT_NOT_ACTIVE" });
  }
  const signedIn = await signIn(ctx, driver, accountId, platform, signal);
  const started = performance.now();
  let out: { data: Record<string, string> };
  try {
    out = await signedIn.run((session, dc) => driver.execute(kind, params, session, dc));
  } catch (err) {
    await recordFailure(ctx, acc, err, platform);
    if (err instanceof DriverError && err.kind === "not_found") {
      return create(ExecuteActionResponseSchema, { success: false, error: err.message, result: { actionType: `ACTION_TYPE_${ActionType[actionType]}`, durationMs: BigInt(Math.round(performance.now() - started)) } });
    }
    mapDriverError(err, platform);
  }
  return create(ExecuteActionResponseSchema, {
    success: true,
    result: { actionType: `ACTION_TYPE_${ActionType[actionType]}`, durationMs: BigInt(Math.round(performance.now() - started)), data: out.data },
  });
}

/** Asks the platform and brings AccountService's status in line (with history). */
export async function checkStatus(ctx: PlatformsContext, platform: Platform, accountId: string, signal?: AbortSignal): Promise<CheckAccountStatusResponse> {
  const driver = driverFor(ctx, platform);
  checkId(accountId, "account_id");
  const acc = await ctx.peers.accounts.getAccount({ accountId });
  if (acc.platform !== platform) throw new AppError("FAILED_PRECONDITION", `account ${accountId} is on ${acc.platform}, not ${platform}`);
  const signedIn = await signIn(ctx, driver, accountId, platform, signal);
  let reported: PlatformAccountStatus;
  try {
    reported = await signedIn.run((session, dc) => driver.accountStatus(session, dc));
  } catch (err) {
    if (err instanceof DriverError && (err.kind === "banned" || err.kind === "suspended")) reported = { status: err.kind, reason: err.message };
    else {
      await recordFailure(ctx, acc, err, platform);
      mapDriverError(err, platform);
    }
  }
  const target = statusAfterCheck(acc.status, reported.status);
  if (target !== undefined) {
    await ctx.peers.accounts.updateStatus({ accountId, status: target, reason: `${platform} reports ${reported.status}${reported.reason ? `: ${reported.reason}` : ""}`.slice(0, 1000) });
  }
  return create(CheckAccountStatusResponseSchema, {
    accountId,
    status: target ?? acc.status,
    platformStatus: reported.status,
    reason: reported.reason,
    checkedAt: timestampFromDate(new Date()),
    statusChanged: target !== undefined,
  });
}
