import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { ActionType } from "../gen/conveer/v1/platform_pb.js";
import type { Proxy } from "../gen/conveer/v1/proxy_pb.js";
import type { CheckAccountStatusResponse, ExecuteActionResponse, RegisterRequest, RegisterResponse } from "../gen/conveer/v1/platform_pb.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CheckAccountStatusResponseSchema, ExecuteActionResponseSchema, RegisterResponseSchema } from "../gen/conveer/v1/platform_pb.js";
import { AppError, invalidArgument, quote } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";
import type { Platform } from "../domain.ts";
import { checkId } from "../store/ids.ts";
import type { Db } from "../store/db.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";
import { ACTION_KINDS, DriverError } from "./driver.ts";
import type { DriverContext, DriverSession, PlatformDriver } from "./driver.ts";
import type { PlatformPeers } from "./peers.ts";
import * as store from "./registration-store.ts";
import type { RegistrationRow } from "./registration-store.ts";

/** Settings of the platform services. */
export type PlatformOptions = { codeTimeoutSeconds: number; leaseMs: number };

/** Dependencies of the platform services. */
export type PlatformsDeps = { db: Db; drivers: Partial<Record<Platform, PlatformDriver>>; peers: PlatformPeers; newId: () => string; log: Logger; options: PlatformOptions };

/** The registration steps, in order; a failure names the one it happened in. */
export const STEPS = ["create_account", "allocate_proxy", "rent_number", "sign_up", "wait_code", "confirm", "store"] as const;
type Step = (typeof STEPS)[number];

class StepFailure extends Error {}

const COUNTRY = /^[a-z]{2}$/;
const LOGIN = /^[A-Za-z0-9._-]{3,64}$/;

/**
 * The platform side: the registration conveyor (a durable step machine), actions, and status
 * checks, for every platform through its bound driver. Transport-free.
 */
export function createPlatforms({ db, drivers, peers, newId, log, options }: PlatformsDeps) {
  function driverFor(platform: Platform): PlatformDriver {
    const d = drivers[platform];
    if (!d) throw new AppError("FAILED_PRECONDITION", `no driver configured for platform ${platform}; bind one in CONVEER_PLATFORM_DRIVERS (e.g. ${platform}=sandbox)`);
    return d;
  }

  const endpoint = (p: Proxy): ProxyEndpoint => ({ protocol: p.protocol as ProxyEndpoint["protocol"], host: p.host, port: p.port, username: p.username, password: p.password });

  /** Best-effort undo of what a registration holds: refund the number, free the proxy, retire the account. */
  async function cleanUp(reg: Pick<RegistrationRow, "id" | "account_id" | "activation_id">, step: string, error: string): Promise<void> {
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        log.warn({ registration_id: reg.id, what, err: String(err) }, "registration clean-up step failed");
      }
    };
    if (reg.activation_id) await attempt("cancel number", () => peers.sms.cancelActivation({ activationId: reg.activation_id }));
    if (reg.account_id) {
      await attempt("release proxy", () => peers.proxies.releaseProxy({ accountId: reg.account_id }));
      await attempt("retire account", () => peers.accounts.updateStatus({ accountId: reg.account_id, status: AccountStatus.DELETED, reason: `registration ${reg.id} failed at ${step}: ${error}`.slice(0, 1000) }));
    }
    await store.finishRegistration(db, reg.id, "failed", step, error);
  }

  /** The CREATING account a registration made, by its registration_id label ("" when none). */
  async function creatingAccountOf(platform: string, registrationId: string): Promise<string> {
    let pageToken = "";
    do {
      const page = await peers.accounts.listAccounts({ platform, status: AccountStatus.CREATING, pageSize: 1000, pageToken });
      const hit = page.accounts.find((a) => a.labels.registration_id === registrationId);
      if (hit) return hit.id;
      pageToken = page.nextPageToken;
    } while (pageToken);
    return "";
  }

  function mapDriverError(err: unknown, platform: Platform): never {
    if (!(err instanceof DriverError)) throw err;
    switch (err.kind) {
      case "rate_limited":
        throw new AppError("RESOURCE_EXHAUSTED", `${platform} rate-limited this account; retry after ${Math.ceil(err.retryAfterMs / 1000)} s`);
      case "invalid":
        throw new AppError("INVALID_ARGUMENT", err.message);
      case "not_found":
        throw new AppError("NOT_FOUND", err.message);
      case "banned":
      case "suspended":
        throw new AppError("FAILED_PRECONDITION", `account is ${err.kind} on ${platform}: ${err.message}`);
      default:
        throw new AppError("UNAVAILABLE", `${platform} is unavailable: ${err.message}`);
    }
  }

  async function proxyOf(accountId: string, platform: Platform): Promise<ProxyEndpoint> {
    try {
      return endpoint(await peers.proxies.getProxyForAccount({ accountId }));
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.NotFound) throw err;
      return endpoint(await peers.proxies.allocateProxy({ accountId, platform }));
    }
  }

  /**
   * The account's stored session, credentials and proxy (read at once: one round of peer calls),
   * and a runner that, when the session has expired, logs in again once and keeps the new session.
   */
  async function signIn(driver: PlatformDriver, accountId: string, platform: Platform, signal?: AbortSignal) {
    const [cred, proxy] = await Promise.all([peers.accounts.getCredentials({ accountId }), proxyOf(accountId, platform)]);
    const ctx: DriverContext = { proxy, signal };
    let session: DriverSession = { userId: cred.additional.platform_user_id ?? "", sessionToken: cred.additional.session_token ?? "" };
    return {
      async run<T>(fn: (session: DriverSession, ctx: DriverContext) => Promise<T>): Promise<T> {
        try {
          return await fn(session, ctx);
        } catch (err) {
          if (!(err instanceof DriverError && err.kind === "unauthorized")) throw err;
          session = await driver.login(cred.login, cred.password, ctx);
          await peers.accounts.updateCredentials({ accountId, additional: { session_token: session.sessionToken, platform_user_id: session.userId } });
          return fn(session, ctx);
        }
      },
    };
  }

  const api = {
    /** Runs the conveyor for one new account; answers success=false with the failed step on failure. */
    async register(platform: Platform, req: RegisterRequest, signal?: AbortSignal): Promise<RegisterResponse> {
      const driver = driverFor(platform);
      const country = (req.country || "ru").toLowerCase();
      if (!COUNTRY.test(country)) throw invalidArgument("country", `must be a two-letter country code like ru, got ${quote(req.country)}`);
      if (req.login && !LOGIN.test(req.login)) throw invalidArgument("login", `must be 3-64 letters, digits, . _ or -, got ${quote(req.login)}`);
      if (req.proxyCountry && !/^[A-Za-z]{2}$/.test(req.proxyCountry)) throw invalidArgument("proxy_country", `must be a two-letter country code like RU, got ${quote(req.proxyCountry)}`);
      const id = newId();
      const login = req.login || `${platform}_${randomBytes(5).toString("hex")}`;
      const password = req.password || randomBytes(12).toString("base64url");
      await store.insertRegistration(db, id, platform, login, options.leaseMs);
      const heartbeat = setInterval(() => {
        db.query("UPDATE registrations SET lease_until = now() + $2 * interval '1 millisecond' WHERE id = $1 AND status = 'running'", [id, options.leaseMs]).catch(() => {});
      }, Math.max(100, options.leaseMs / 3));
      const held = { id, account_id: "", activation_id: "" };
      let step: Step = "create_account";
      const next = async (to: Step, fields: Parameters<typeof store.advance>[3] = {}) => {
        await store.advance(db, id, to, fields, options.leaseMs);
        step = to;
      };
      try {
        const acc = await peers.accounts.createAccount({ platform, login, password, status: AccountStatus.CREATING, labels: { registration_id: id } }, { signal });
        held.account_id = acc.id;
        await next("allocate_proxy", { account_id: acc.id });
        const proxy = await peers.proxies.allocateProxy({ accountId: acc.id, platform, preferredCountry: req.proxyCountry }, { signal });
        const ctx: DriverContext = { proxy: endpoint(proxy), signal };
        await next("rent_number", { proxy_id: proxy.id });
        const act = await peers.sms.getNumber({ service: platform, country }, { signal });
        held.activation_id = act.id;
        await next("sign_up", { activation_id: act.id });
        const su = await driver.startSignUp({ login, password, phone: act.phone, firstName: req.firstName, lastName: req.lastName, fields: req.platformFields }, ctx);
        await next("wait_code", { signup_id: su.signupId });
        const code = await peers.sms.getCode({ activationId: act.id, timeoutSeconds: options.codeTimeoutSeconds }, { signal });
        if (!code.success) throw new StepFailure(`no SMS code arrived within ${options.codeTimeoutSeconds} s (${code.error.split(";")[0]})`);
        await next("confirm");
        const session = await driver.confirmSignUp(su.signupId, code.code, ctx);
        await next("store");
        await peers.accounts.updateCredentials({ accountId: acc.id, phone: act.phone, additional: { session_token: session.sessionToken, platform_user_id: session.userId } });
        await peers.accounts.updateStatus({ accountId: acc.id, status: AccountStatus.ACTIVE, reason: `registered (registration ${id})` });
        // The code is used: end the activation so the number goes back to the provider's pool.
        await peers.sms.cancelActivation({ activationId: act.id }).catch((e) => log.warn({ err: String(e), activation_id: act.id }, "could not complete the activation"));
        await store.finishRegistration(db, id, "succeeded");
        log.info({ registration_id: id, account_id: acc.id, platform }, "registered");
        return create(RegisterResponseSchema, { success: true, accountId: acc.id, registrationId: id });
      } catch (err) {
        const error = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message;
        log.warn({ registration_id: id, platform, step, error }, "registration failed");
        await cleanUp(held, step, error);
        return create(RegisterResponseSchema, { success: false, error, failedStep: step, registrationId: id });
      } finally {
        clearInterval(heartbeat);
      }
    },

    /** Cleans up registrations whose process died; returns how many. */
    async recoverAbandoned(): Promise<number> {
      const rows = await store.claimAbandoned(db, 50, options.leaseMs);
      for (const r of rows) {
        log.warn({ registration_id: r.id, step: r.step }, "cleaning up a registration interrupted by a stopped process");
        // Died between creating the account and recording its id: find it by its label.
        const held = r.account_id ? r : { ...r, account_id: await creatingAccountOf(r.platform, r.id) };
        await cleanUp(held, r.step, `interrupted at ${r.step}: the process running it stopped`);
      }
      return rows.length;
    },

    /** Runs one action with the account's credentials and proxy. */
    async execute(platform: Platform, accountId: string, actionType: ActionType, params: Record<string, string>, signal?: AbortSignal): Promise<ExecuteActionResponse> {
      const driver = driverFor(platform);
      checkId(accountId, "account_id");
      const kind = ACTION_KINDS[actionType - 1];
      if (!kind) throw invalidArgument("action_type", `must be one of ${ACTION_KINDS.map((_, i) => ActionType[i + 1]).join(", ")}, got ${actionType}`);
      const acc = await peers.accounts.getAccount({ accountId });
      if (acc.platform !== platform) throw new AppError("FAILED_PRECONDITION", `account ${accountId} is on ${acc.platform}, not ${platform}; call the ${acc.platform} service`);
      if (acc.status !== AccountStatus.ACTIVE && acc.status !== AccountStatus.WARMING) {
        throw new AppError("FAILED_PRECONDITION", `account ${accountId} is ${AccountStatus[acc.status]}; actions need ACTIVE or WARMING`);
      }
      const signedIn = await signIn(driver, accountId, platform, signal);
      const started = performance.now();
      let out: { data: Record<string, string> };
      try {
        out = await signedIn.run((session, ctx) => driver.execute(kind, params, session, ctx));
      } catch (err) {
        if (err instanceof DriverError && (err.kind === "banned" || err.kind === "suspended")) {
          const status = err.kind === "banned" ? AccountStatus.BANNED : AccountStatus.SUSPENDED;
          await peers.accounts.updateStatus({ accountId, status, reason: `${platform} reports ${err.kind}: ${err.message}`.slice(0, 1000) }).catch((e) => log.warn({ err: String(e) }, "could not record the platform's status"));
        }
        if (err instanceof DriverError && err.kind === "not_found") {
          return create(ExecuteActionResponseSchema, { success: false, error: err.message, result: { actionType: `ACTION_TYPE_${ActionType[actionType]}`, durationMs: BigInt(Math.round(performance.now() - started)) } });
        }
        mapDriverError(err, platform);
      }
      return create(ExecuteActionResponseSchema, {
        success: true,
        result: { actionType: `ACTION_TYPE_${ActionType[actionType]}`, durationMs: BigInt(Math.round(performance.now() - started)), data: out.data },
      });
    },

    /** Asks the platform and brings AccountService's status in line (with history). */
    async checkStatus(platform: Platform, accountId: string, signal?: AbortSignal): Promise<CheckAccountStatusResponse> {
      const driver = driverFor(platform);
      checkId(accountId, "account_id");
      const acc = await peers.accounts.getAccount({ accountId });
      if (acc.platform !== platform) throw new AppError("FAILED_PRECONDITION", `account ${accountId} is on ${acc.platform}, not ${platform}`);
      const signedIn = await signIn(driver, accountId, platform, signal);
      let reported;
      try {
        reported = await signedIn.run((session, ctx) => driver.accountStatus(session, ctx));
      } catch (err) {
        if (err instanceof DriverError && (err.kind === "banned" || err.kind === "suspended")) reported = { status: err.kind, reason: err.message };
        else mapDriverError(err, platform);
      }
      const want = reported.status === "banned" ? AccountStatus.BANNED : reported.status === "suspended" ? AccountStatus.SUSPENDED : undefined;
      let status = acc.status;
      let changed = false;
      const target = want ?? (acc.status === AccountStatus.BANNED || acc.status === AccountStatus.SUSPENDED ? AccountStatus.ACTIVE : undefined);
      if (target !== undefined && target !== acc.status && acc.status !== AccountStatus.DELETED) {
        await peers.accounts.updateStatus({ accountId, status: target, reason: `${platform} reports ${reported.status}${reported.reason ? `: ${reported.reason}` : ""}`.slice(0, 1000) });
        status = target;
        changed = true;
      }
      return create(CheckAccountStatusResponseSchema, {
        accountId,
        status,
        platformStatus: reported.status,
        reason: reported.reason,
        checkedAt: timestampFromDate(new Date()),
        statusChanged: changed,
      });
    },
  };
  return api;
}

/** The platform services' API. */
export type Platforms = ReturnType<typeof createPlatforms>;
