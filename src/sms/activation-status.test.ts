import { test } from "node:test";
import assert from "node:assert/strict";
import { SMSStatus as S } from "../gen/conveer/v1/sms_pb.js";
import { OPEN, onCancel, onExpiry } from "./activation-status.ts";

const ENDED = [S.SMS_STATUS_COMPLETED, S.SMS_STATUS_CANCELLED, S.SMS_STATUS_FAILED];

test("an expired rental fails without a code and completes with one; an ended activation stays as it is", () => {
  for (const s of OPEN) assert.deepEqual(onExpiry(s), { to: S.SMS_STATUS_FAILED, reason: "expired without a code" });
  assert.deepEqual(onExpiry(S.SMS_STATUS_CODE_RECEIVED), { to: S.SMS_STATUS_COMPLETED, reason: "rental ended after the code arrived" });
  for (const s of ENDED) assert.equal(onExpiry(s), undefined);
});

test("a cancel before the code cancels, after it completes; an ended activation stays as it is", () => {
  for (const s of OPEN) assert.deepEqual(onCancel(s), { to: S.SMS_STATUS_CANCELLED, reason: "cancelled" });
  assert.deepEqual(onCancel(S.SMS_STATUS_CODE_RECEIVED), { to: S.SMS_STATUS_COMPLETED, reason: "completed: the code was used" });
  for (const s of ENDED) assert.equal(onCancel(s), undefined);
});

test("only PENDING and WAITING_CODE are open", () => {
  assert.deepEqual([...OPEN].sort(), [S.SMS_STATUS_PENDING, S.SMS_STATUS_WAITING_CODE].sort());
});
