import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { SMSStatus as S } from "../gen/conveer/v1/sms_pb.js";
import { AppError } from "../errors.ts";
import { abortError, answerFor, providerError } from "./messages.ts";
import { SmsProviderError } from "./provider.ts";
import type { SmsProvider } from "./provider.ts";
import type { ActivationRow } from "./sms-store.ts";

const at = new Date("2026-01-02T03:04:05.000Z");
const row = (status: number, code = "") => ({ status, code, expires_at: at }) as ActivationRow;

test("GetCode answers a code once received, a failure once cancelled or expired, and nothing while open", () => {
  assert.deepEqual([answerFor(row(S.SMS_STATUS_CODE_RECEIVED, "1234"))?.code, answerFor(row(S.SMS_STATUS_COMPLETED, "99"))?.success], ["1234", true]);
  assert.equal(answerFor(row(S.SMS_STATUS_CANCELLED))?.error, "activation was cancelled");
  assert.equal(answerFor(row(S.SMS_STATUS_FAILED))?.error, "activation expired at 2026-01-02T03:04:05.000Z without a code");
  assert.equal(answerFor(row(S.SMS_STATUS_WAITING_CODE)), undefined);
  assert.equal(answerFor(row(S.SMS_STATUS_PENDING)), undefined);
});

test("provider failures map to the status a client can act on", () => {
  const p = { name: "prov" } as SmsProvider;
  const kinds = [
    ["unknown_service", "INVALID_ARGUMENT"],
    ["no_numbers", "RESOURCE_EXHAUSTED"],
    ["insufficient_balance", "RESOURCE_EXHAUSTED"],
    ["not_found", "NOT_FOUND"],
    ["unavailable", "UNAVAILABLE"],
  ] as const;
  for (const [kind, code] of kinds) assert.equal(providerError(p, new SmsProviderError(kind, "x"), "rent a number").code, code, kind);
  assert.match(providerError(p, new Error("socket hang up"), "rent a number").message, /SMS provider prov could not rent a number: socket hang up; retry later/);
  const own = new AppError("NOT_FOUND", "mine");
  assert.equal(providerError(p, own, "x"), own);
});

test("an ended wait is CANCELLED, or DEADLINE_EXCEEDED when the caller's deadline passed", () => {
  assert.equal(abortError(new ConnectError("late", Code.DeadlineExceeded)).code, "DEADLINE_EXCEEDED");
  assert.equal(abortError(new Error("gone")).code, "CANCELLED");
  const own = new AppError("UNAVAILABLE", "stopping");
  assert.equal(abortError(own), own);
});
