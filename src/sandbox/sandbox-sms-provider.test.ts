import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSseBlock } from "./sandbox-sms-provider.ts";

test("parseSseBlock: id, event and data lines (CRLF too); comments, other events and bad JSON carry no SMS", () => {
  const data = JSON.stringify({ ref: "r1", phone: "+7", text: "code 1234", code: "1234", at: "2026-01-01T00:00:00.000Z" });
  assert.deepEqual(parseSseBlock(`id: 7\r\nevent: sms\r\ndata: ${data}`), {
    id: "7",
    sms: { ref: "r1", phone: "+7", text: "code 1234", code: "1234", at: new Date("2026-01-01T00:00:00.000Z") },
  });
  assert.equal(parseSseBlock(`data: ${data}`).sms?.ref, "r1", "an unnamed event is a message");
  assert.deepEqual(parseSseBlock(": ping"), { id: undefined, sms: undefined });
  assert.deepEqual(parseSseBlock(`id: 8\nevent: other\ndata: ${data}`), { id: "8", sms: undefined });
  assert.deepEqual(parseSseBlock("id: 9\ndata: {cut"), { id: "9", sms: undefined });
});
