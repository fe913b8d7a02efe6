import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError } from "commander";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import { collect, enumName, enumValue, intBetween, labelSelector, pages, timeValue } from "./options.ts";

test("pages follows next tokens page by page and stops at the limit, asking for no more than it needs", async () => {
  const asked: [string, number][] = [];
  const fetch = async (token: string, size: number) => {
    asked.push([token, size]);
    const from = Number(token || 0);
    const items = Array.from({ length: Math.min(size, 25 - from) }, (_, i) => from + i);
    return { items, next: from + items.length < 25 ? String(from + items.length) : "" };
  };
  assert.deepEqual(await collect(pages(fetch, 10)), Array.from({ length: 25 }, (_, i) => i));
  assert.deepEqual(asked, [["", 10], ["10", 10], ["20", 10]]);
  asked.length = 0;
  const sizes: number[] = [];
  for await (const page of pages(fetch, 10, 12)) sizes.push(page.length);
  assert.deepEqual(sizes, [10, 2]);
  assert.deepEqual(asked, [["", 10], ["10", 2]]);
});

test("option parsers name what they take", () => {
  assert.equal(intBetween(1, 1000)("100"), 100);
  for (const bad of ["0", "1001", "1.5", "ten", ""]) assert.throws(() => intBetween(1, 1000)(bad), InvalidArgumentError);
  assert.deepEqual(labelSelector("b=2", labelSelector("a=1")), ["a=1", "b=2"]);
  assert.throws(() => labelSelector("a"), /key=value/);
  const status = enumValue(AccountStatus, "ACCOUNT_STATUS_");
  assert.equal(status("active"), AccountStatus.ACTIVE);
  assert.equal(status("ACCOUNT_STATUS_BANNED"), AccountStatus.BANNED);
  assert.throws(() => status("unspecified"), /must be one of CREATING, ACTIVE, WARMING, BANNED, SUSPENDED, DELETED/);
  // SMSStatus's generated keys keep their prefix (SMS_STATUS_PENDING): short and full names work too.
  const sms = enumValue(SMSStatus, "SMS_STATUS_");
  assert.equal(sms("completed"), SMSStatus.SMS_STATUS_COMPLETED);
  assert.equal(sms("SMS_STATUS_WAITING_CODE"), SMSStatus.SMS_STATUS_WAITING_CODE);
  assert.throws(() => sms("unspecified"), /must be one of PENDING, WAITING_CODE, CODE_RECEIVED, COMPLETED, CANCELLED, FAILED \(any case\)/);
  assert.equal(enumName(SMSStatus, SMSStatus.SMS_STATUS_COMPLETED, "SMS_STATUS_"), "COMPLETED");
  assert.equal(enumName(AccountStatus, AccountStatus.ACTIVE), "ACTIVE");
  assert.equal(timestampDate(timeValue("2026-11-30T18:00:00Z")).toISOString(), "2026-11-30T18:00:00.000Z");
  const ago = Date.now() - timestampDate(timeValue("2h")).getTime();
  assert.ok(Math.abs(ago - 7_200_000) < 5000, String(ago));
  assert.throws(() => timeValue("yesterday"), /ISO 8601/);
  assert.throws(() => timeValue("2026-13-45"), /ISO 8601/);
});
