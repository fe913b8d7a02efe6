import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { RegisterResponseSchema } from "../gen/conveer/v1/platform_pb.js";
import type { RegisterRequest, RegisterResponse } from "../gen/conveer/v1/platform_pb.js";
import type { Platform } from "../domain.ts";
import { invalidArgument, quote } from "../errors.ts";
import type { DriverContext } from "./driver.ts";
import { driverFor, endpoint } from "./platforms-context.ts";
import type { PlatformsContext } from "./platforms-context.ts";
import { SpanStatusCode, inSpan } from "../telemetry/tracing.ts";
import type { Span } from "../telemetry/tracing.ts";
import * as store from "./registration-store.ts";
import { BATCH_ID } from "./registration-list.ts";
import type { RegistrationClaim, RegistrationRow } from "./registration-store.ts";

/**
 * The registration conveyor, a durable step machine: each step is recorded in the registrations
 * table with what it produced and a lease the running process renews, so a registration whose
 * process died is found by recoverAbandoned and undone.
 */

/** The registration steps, in order; a failure names the one it happened in. */
export const STEPS = ["create_account", "allocate_proxy", "rent_number", "sign_up", "wait_code", "confirm", "store"] as const;
type Step = (typeof STEPS)[number];

class StepFailure extends Error {}

/** This process's claim on a registration was taken over (its lease lapsed, e.g. while it was cut off): stop, and undo nothing. */
class LostClaim extends Error {
  constructor(id: string) {
    super(`registration ${id} was taken over by another replica after its lease lapsed; that replica cleans it up`);
  }
}

const COUNTRY = /^[a-z]{2}$/;
const LOGIN = /^[A-Za-z0-9._-]{3,64}$/;

/**
 * Best-effort undo of what a registration holds: refund the number, free the proxy, retire the
 * account. Only while `reg.claim` is still held: a replica that took the registration over undoes
 * it itself.
 */
async function cleanUp(ctx: PlatformsContext, reg: Pick<RegistrationRow, "id" | "account_id" | "activation_id" | "claim">, step: string, error: string): Promise<void> {
  const { peers } = ctx;
  if (!(await store.renewLease(ctx.db, reg, ctx.options.leaseMs))) {
    ctx.log.warn({ registration_id: reg.id, step }, "registration taken over by another replica: leaving its clean-up to it");
    return;
  }
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      ctx.log.warn({ registration_id: reg.id, what, err: String(err) }, "registration clean-up step failed");
    }
  };
  if (reg.activation_id) await attempt("cancel number", () => peers.sms.cancelActivation({ activationId: reg.activation_id }));
  if (reg.account_id) {
    await attempt("release proxy", () => peers.proxies.releaseProxy({ accountId: reg.account_id }));
    await attempt("retire account", () => peers.accounts.updateStatus({ accountId: reg.account_id, status: AccountStatus.DELETED, reason: `registration ${reg.id} failed at ${step}: ${error}`.slice(0, 1000) }));
  }
  await store.finishRegistration(ctx.db, reg, "failed", step, error);
}

/** The CREATING account a registration made, by its registration_id label ("" when none). */
async function creatingAccountOf(ctx: PlatformsContext, platform: string, registrationId: string): Promise<string> {
  let pageToken = "";
  do {
    const page = await ctx.peers.accounts.listAccounts({ platform, status: AccountStatus.CREATING, pageSize: 1000, pageToken });
    const hit = page.accounts.find((a) => a.labels.registration_id === registrationId);
    if (hit) return hit.id;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return "";
}

/**
 * Runs the conveyor for one new account; answers success=false with the failed step on failure.
 * Traced as one `register` span (inside the call's trace) with a child span per step.
 */
export function register(ctx: PlatformsContext, platform: Platform, req: RegisterRequest, signal?: AbortSignal): Promise<RegisterResponse> {
  return inSpan("register", { attributes: { "conveer.platform": platform } }, (span) => conveyor(ctx, platform, req, span, signal));
}

async function conveyor(ctx: PlatformsContext, platform: Platform, req: RegisterRequest, span: Span, signal?: AbortSignal): Promise<RegisterResponse> {
  const { db, peers, log, options } = ctx;
  const driver = driverFor(ctx, platform);
  const country = (req.country || "ru").toLowerCase();
  if (!COUNTRY.test(country)) throw invalidArgument("country", `must be a two-letter country code like ru, got ${quote(req.country)}`);
  if (req.login && !LOGIN.test(req.login)) throw invalidArgument("login", `must be 3-64 letters, digits, . _ or -, got ${quote(req.login)}`);
  if (req.proxyCountry && !/^[A-Za-z]{2}$/.test(req.proxyCountry)) throw invalidArgument("proxy_country", `must be a two-letter country code like RU, got ${quote(req.proxyCountry)}`);
  if (req.batchId && !BATCH_ID.test(req.batchId)) throw invalidArgument("batch_id", `must be 1-64 letters, digits, . _ or -, got ${quote(req.batchId)}`);
  const id = ctx.newId();
  span.setAttribute("conveer.registration.id", id);
  const login = req.login || `${platform}_${randomBytes(5).toString("hex")}`;
  const password = req.password || randomBytes(12).toString("base64url");
  await store.insertRegistration(db, id, platform, login, options.leaseMs, req.batchId);
  const claim: RegistrationClaim = { id, claim: store.FIRST_CLAIM };
  const heartbeat = setInterval(() => {
    store.renewLease(db, claim, options.leaseMs).catch(() => {});
  }, Math.max(100, options.leaseMs / 3));
  const held = { ...claim, account_id: "", activation_id: "" };
  let step: Step = "create_account";
  /** Enters step `to` (recorded with what the last one produced; a lost claim stops here) and runs its work in a span of its own. */
  const inStep = <T>(to: Step, fields: store.Advance["fields"], work: () => Promise<T>) =>
    inSpan(`register ${to}`, { attributes: { "conveer.registration.step": to } }, async () => {
      if (to !== step && !(await ctx.advance({ c: claim, step: to, fields, leaseMs: options.leaseMs }))) throw new LostClaim(id);
      step = to;
      return work();
    });
  try {
    const acc = await inStep("create_account", {}, () => peers.accounts.createAccount({ platform, login, password, status: AccountStatus.CREATING, labels: { registration_id: id } }, { signal }));
    held.account_id = acc.id;
    const proxy = await inStep("allocate_proxy", { account_id: acc.id }, () => peers.proxies.allocateProxy({ accountId: acc.id, platform, preferredCountry: req.proxyCountry }, { signal }));
    const dc: DriverContext = { proxy: endpoint(proxy), signal };
    const act = await inStep("rent_number", { proxy_id: proxy.id }, () => peers.sms.getNumber({ service: platform, country }, { signal }));
    held.activation_id = act.id;
    const su = await inStep("sign_up", { activation_id: act.id }, () => driver.startSignUp({ login, password, phone: act.phone, firstName: req.firstName, lastName: req.lastName, fields: req.platformFields }, dc));
    const code = await inStep("wait_code", { signup_id: su.signupId }, async () => {
      const c = await peers.sms.getCode({ activationId: act.id, timeoutSeconds: options.codeTimeoutSeconds }, { signal });
      if (!c.success) throw new StepFailure(`no SMS code arrived within ${options.codeTimeoutSeconds} s (${c.error.split(";")[0]})`);
      return c;
    });
    const session = await inStep("confirm", {}, () => driver.confirmSignUp(su.signupId, code.code, dc));
    await inStep("store", {}, async () => {
      // The code is used: end the activation so the number goes back to the provider's pool (meanwhile the account is stored).
      const completed = peers.sms.cancelActivation({ activationId: act.id }).catch((e) => log.warn({ err: String(e), activation_id: act.id }, "could not complete the activation"));
      try {
        await peers.accounts.updateCredentials({ accountId: acc.id, phone: act.phone, additional: { session_token: session.sessionToken, platform_user_id: session.userId } });
        await peers.accounts.updateStatus({ accountId: acc.id, status: AccountStatus.ACTIVE, reason: `registered (registration ${id})` });
      } finally {
        await completed;
      }
    });
    // Its end shares a statement with the step moves of concurrent registrations.
    if (!(await ctx.advance({ c: claim, step: "done", fields: {}, leaseMs: options.leaseMs, status: "succeeded" }))) throw new LostClaim(id);
    log.info({ registration_id: id, account_id: acc.id, platform }, "registered");
    ctx.metrics?.registrationEnded(platform, "succeeded", "");
    return create(RegisterResponseSchema, { success: true, accountId: acc.id, registrationId: id });
  } catch (err) {
    const error = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message;
    log.warn({ registration_id: id, platform, step, reason: error }, "registration failed");
    ctx.metrics?.registrationEnded(platform, "failed", step);
    span.setAttribute("conveer.registration.failed_step", step);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `failed at ${step}` });
    if (!(err instanceof LostClaim)) await cleanUp(ctx, held, step, error);
    return create(RegisterResponseSchema, { success: false, error, failedStep: step, registrationId: id });
  } finally {
    clearInterval(heartbeat);
  }
}

/** Cleans up registrations whose process died; returns how many. */
export async function recoverAbandoned(ctx: PlatformsContext): Promise<number> {
  const rows = await store.claimAbandoned(ctx.db, 50, ctx.options.leaseMs);
  for (const r of rows) {
    const reason = `interrupted at ${r.step}: the process running it stopped`;
    ctx.log.warn({ registration_id: r.id, platform: r.platform, step: r.step, reason }, "registration failed");
    ctx.metrics?.registrationEnded(r.platform, "failed", r.step);
    // Died between creating the account and recording its id: find it by its label.
    const held = r.account_id ? r : { ...r, account_id: await creatingAccountOf(ctx, r.platform, r.id) };
    await cleanUp(ctx, held, r.step, reason);
  }
  return rows.length;
}
