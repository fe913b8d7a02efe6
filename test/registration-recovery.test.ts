import { test } from "node:test";
import assert from "node:assert/strict";
import { AccountStatus } from "../src/gen/conveer/v1/account_pb.js";
import { startTestSystem } from "./support/system.ts";

test("a registration that died right after creating its account is cleaned up by its label", async () => {
  const sys = await startTestSystem("pglite", { env: { CONVEER_REGISTRATION_LEASE_MS: "300" } });
  try {
    const regId = "0123456789abcdef0123abcd";
    const acc = await sys.accounts.createAccount({ platform: "vk", login: "half-made", password: "pw", status: AccountStatus.CREATING, labels: { registration_id: regId } });
    const other = await sys.accounts.createAccount({ platform: "vk", login: "other-creating", password: "pw", status: AccountStatus.CREATING, labels: { registration_id: "ffffffffffffffffffffffff" } });
    // As left by a process killed between CreateAccount and recording the account id.
    await sys.db.query(
      "INSERT INTO registrations (id, platform, status, step, login, lease_until) VALUES ($1, 'vk', 'running', 'create_account', 'half-made', now() - interval '1 minute')",
      [regId],
    );
    const deadline = Date.now() + 10_000;
    while ((await sys.accounts.getAccount({ accountId: acc.id })).status !== AccountStatus.DELETED) {
      assert.ok(Date.now() < deadline, "the half-made account was not retired within 10 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const reg = await sys.db.query<{ status: string; failed_step: string }>("SELECT status, failed_step FROM registrations WHERE id = $1", [regId]);
    assert.deepEqual(reg.rows[0], { status: "failed", failed_step: "create_account" });
    assert.equal((await sys.accounts.getAccount({ accountId: other.id })).status, AccountStatus.CREATING, "an unrelated CREATING account is left alone");
  } finally {
    await sys.stop();
  }
});
