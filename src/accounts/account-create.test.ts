import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AccountStatus, CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { checkPhone, validateNew } from "./account-create.ts";

const req = (extra: Partial<{ platform: string; login: string; password: string; phone: string; status: AccountStatus; labels: Record<string, string> }> = {}) =>
  create(CreateAccountRequestSchema, { platform: "vk", login: "alice", password: "secret", ...extra });

test("a new account needs a known platform, a login, a password; a phone is E.164 when given", () => {
  validateNew(req());
  validateNew(req({ phone: "+79991234567", status: AccountStatus.WARMING }));
  assert.throws(() => validateNew(req({ platform: "" })), /platform is required/);
  assert.throws(() => validateNew(req({ platform: "myspace" })), /platform must be one of .*got "myspace"/);
  assert.throws(() => validateNew(req({ login: "  " })), /login is required/);
  assert.throws(() => validateNew(req({ login: "x".repeat(257) })), /login must be at most 256 characters, got 257/);
  assert.throws(() => validateNew(req({ password: "" })), /password is required/);
  assert.throws(() => validateNew(req({ phone: "89991234567" })), /phone must be E\.164/);
  assert.throws(() => validateNew(req({ status: 99 as AccountStatus })), /status is not a known AccountStatus \(99\)/);
  assert.throws(() => validateNew(req({ status: AccountStatus.DELETED })), /status cannot be DELETED/);
  // Labels ListAccounts' label_selector can select: a key neither empty nor holding "=" (a value may).
  validateNew(req({ labels: { team: "a=b" } }));
  assert.throws(() => validateNew(req({ labels: { "": "x" } })), /labels keys must be non-empty and without "=", got ""/);
  assert.throws(() => validateNew(req({ labels: { "a=b": "x" } })), /labels keys must be non-empty and without "=", got "a=b"/);
});

test("an empty phone is allowed (no change, or none)", () => {
  checkPhone("");
  assert.throws(() => checkPhone("+0123"), /phone must be E\.164 like \+79991234567, got "\+0123"/);
});
