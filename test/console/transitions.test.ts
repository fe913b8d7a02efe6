/** The console's copy of the status transitions (offered choices) agrees with the server's rule for every pair. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { assertTransition } from "../../src/accounts/account-status.ts";
import { AccountStatus } from "../../src/gen/conveer/v1/account_pb.js";
import { NEXT_STATUSES } from "../../console/src/session/transitions.ts";
import { TOKEN_SCOPES, grants } from "../../console/src/session/scopes.ts";
import { grants as serverGrants, ALL_SCOPES } from "../../src/auth/scopes.ts";

const all = Object.values(AccountStatus).filter((v): v is AccountStatus => typeof v === "number");

test("every transition the console offers is one the server allows, and every one it allows is offered", () => {
  for (const from of all) {
    for (const to of all) {
      let allowed = true;
      try {
        assertTransition(from, to);
      } catch {
        allowed = false;
      }
      assert.equal(NEXT_STATUSES[from].includes(to), allowed, `${AccountStatus[from]} -> ${AccountStatus[to]}`);
    }
  }
});

test("the console's scope rule grants what the server's does, for every pair of scopes", () => {
  for (const held of ALL_SCOPES) for (const need of ALL_SCOPES) assert.equal(grants([held], need), serverGrants(new Set([held]), need), `${held} → ${need}`);
});

test("the scopes the console offers when creating a token are the server's, in its order", () => {
  assert.deepEqual(TOKEN_SCOPES, ALL_SCOPES);
});
