/** The console's copy of the scope rule agrees with the server's (the status transitions it offers are the server's own table: src/accounts/status-transitions.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { TOKEN_SCOPES, grants } from "../../console/src/session/scopes.ts";
import { grants as serverGrants, ALL_SCOPES } from "../../src/auth/scopes.ts";

test("the console's scope rule grants what the server's does, for every pair of scopes", () => {
  for (const held of ALL_SCOPES) for (const need of ALL_SCOPES) assert.equal(grants([held], need), serverGrants(new Set([held]), need), `${held} → ${need}`);
});

test("the scopes the console offers when creating a token are the server's, in its order", () => {
  assert.deepEqual(TOKEN_SCOPES, ALL_SCOPES);
});
