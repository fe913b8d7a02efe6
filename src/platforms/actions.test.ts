import { test } from "node:test";
import assert from "node:assert/strict";
import { AccountStatus as A } from "../gen/conveer/v1/account_pb.js";
import { classify } from "../warming/worker.ts";
import { driverFailure, statusAfterCheck, statusAfterFailure } from "./actions.ts";
import { DriverError } from "./driver.ts";

test("a status check records what the platform reports, restores ACTIVE once it is lifted, and never revives a DELETED account", () => {
  assert.equal(statusAfterCheck(A.ACTIVE, "banned"), A.BANNED);
  assert.equal(statusAfterCheck(A.WARMING, "suspended"), A.SUSPENDED);
  assert.equal(statusAfterCheck(A.SUSPENDED, "banned"), A.BANNED);
  assert.equal(statusAfterCheck(A.BANNED, "active"), A.ACTIVE);
  assert.equal(statusAfterCheck(A.SUSPENDED, "active"), A.ACTIVE);
  assert.equal(statusAfterCheck(A.BANNED, "banned"), undefined);
  assert.equal(statusAfterCheck(A.ACTIVE, "active"), undefined);
  assert.equal(statusAfterCheck(A.WARMING, "active"), undefined);
  assert.equal(statusAfterCheck(A.DELETED, "banned"), undefined);
});

test("driver failures map to the status a client can act on", () => {
  const cases = [
    [new DriverError("rate_limited", "slow down", 2500), "RESOURCE_EXHAUSTED", /vk rate-limited this account; retry after 3 s/],
    [new DriverError("invalid", "login taken"), "INVALID_ARGUMENT", /^login taken$/],
    [new DriverError("not_found", "no such post"), "NOT_FOUND", /^no such post$/],
    [new DriverError("banned", "spam"), "FAILED_PRECONDITION", /account is banned on vk: spam/],
    [new DriverError("suspended", "check"), "FAILED_PRECONDITION", /account is suspended on vk: check/],
    [new DriverError("unavailable", "502"), "UNAVAILABLE", /vk is unavailable: 502/],
  ] as const;
  for (const [err, code, message] of cases) {
    const e = driverFailure(err, "vk");
    assert.equal(e.code, code, err.kind);
    assert.match(e.message, message);
  }
});

test("a refused login or password is FAILED_PRECONDITION (never retried as an outage) and suspends an ACTIVE or WARMING account with a reason", () => {
  const refused = new DriverError("unauthorized", "wrong login or password");
  const e = driverFailure(refused, "vk");
  assert.equal(e.code, "FAILED_PRECONDITION");
  assert.match(e.message, /vk refused the account's login or password: wrong login or password/);
  assert.equal(classify(e, 1).kind, "fatal");
  assert.deepEqual(statusAfterFailure(A.ACTIVE, refused, "vk"), { status: A.SUSPENDED, reason: "vk refused the stored login or password: wrong login or password" });
  assert.equal(statusAfterFailure(A.WARMING, refused, "vk")?.status, A.SUSPENDED);
  assert.equal(statusAfterFailure(A.BANNED, refused, "vk"), undefined, "a ban is not overwritten");
  assert.equal(statusAfterFailure(A.DELETED, refused, "vk"), undefined);
  assert.equal(statusAfterFailure(A.ACTIVE, new DriverError("banned", "spam"), "vk")?.status, A.BANNED);
  assert.equal(statusAfterFailure(A.ACTIVE, new DriverError("unavailable", "502"), "vk"), undefined);
});
