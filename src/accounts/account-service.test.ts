import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { STORE_KINDS } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { rejectsWith } from "../../test/support/grpc.ts";


for (const kind of STORE_KINDS) {
  describe(`AccountService on ${kind}`, () => {
    let sys: TestSystem;
    before(async () => {
      sys = await startTestSystem(kind);
    });
    after(() => sys.stop());

    test("create, get, credentials round trip; the database holds no plaintext secret", async () => {
      const acc = await sys.accounts.createAccount({
        platform: "vk",
        login: "alice",
        password: "s3cret-Passw0rd!",
        phone: "+79991234567",
        additional: { session_token: "tok-ABCDEF-123456" },
        labels: { team: "a" },
      });
      assert.match(acc.id, /^[0-9a-f]{24}$/);
      assert.equal(acc.status, AccountStatus.ACTIVE);
      assert.equal(acc.hasPhone, true);
      const got = await sys.accounts.getAccount({ accountId: acc.id });
      assert.equal(got.login, "alice");
      assert.deepEqual(got.labels, { team: "a" });
      const cred = await sys.accounts.getCredentials({ accountId: acc.id });
      assert.equal(cred.password, "s3cret-Passw0rd!");
      assert.equal(cred.phone, "+79991234567");
      assert.deepEqual(cred.additional, { session_token: "tok-ABCDEF-123456" });

      // Scan every text column of every table for the secrets.
      const tables = await sys.db.query<{ table_name: string; column_name: string }>(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'",
      );
      for (const { table_name, column_name } of tables.rows) {
        for (const secret of ["s3cret-Passw0rd!", "79991234567", "tok-ABCDEF-123456"]) {
          const r = await sys.db.query(`SELECT 1 FROM "${table_name}" WHERE "${column_name}"::text LIKE $1 LIMIT 1`, [`%${secret}%`]);
          assert.equal(r.rowCount, 0, `plaintext ${secret} found in ${table_name}.${column_name}`);
        }
      }
    });

    test("concurrent GetAccount calls (read in batches) each answer their own account, an unknown id NOT_FOUND, a change seen by the next read", async () => {
      const made = await Promise.all(Array.from({ length: 40 }, (_, i) => sys.accounts.createAccount({ platform: "vk", login: `batch-${i}`, password: "pw-123456" })));
      const missing = "0123456789abcdef0123abcd";
      const got = await Promise.allSettled([...made.map((a) => sys.accounts.getAccount({ accountId: a.id })), sys.accounts.getAccount({ accountId: missing })]);
      made.forEach((a, i) => {
        const r = got[i];
        assert.equal(r.status, "fulfilled");
        assert.equal((r as PromiseFulfilledResult<typeof a>).value.login, `batch-${i}`);
      });
      assert.equal(got[40].status, "rejected");
      await rejectsWith(sys.accounts.getAccount({ accountId: missing }), Code.NotFound, new RegExp(missing));
      await sys.accounts.updateStatus({ accountId: made[0].id, status: AccountStatus.SUSPENDED, reason: "batch test" });
      const [again] = await Promise.all([sys.accounts.getAccount({ accountId: made[0].id }), sys.accounts.getAccount({ accountId: made[1].id })]);
      assert.equal(again.status, AccountStatus.SUSPENDED);
    });

    test("UpdateCredentials replaces given secrets and merges additional", async () => {
      const acc = await sys.accounts.createAccount({ platform: "vk", login: "upd", password: "old", additional: { a: "1", b: "2" } });
      await sys.accounts.updateCredentials({ accountId: acc.id, phone: "+79990000001", additional: { b: "", c: "3" } });
      const cred = await sys.accounts.getCredentials({ accountId: acc.id });
      assert.deepEqual([cred.password, cred.phone, cred.additional], ["old", "+79990000001", { a: "1", c: "3" }]);
      await rejectsWith(sys.accounts.updateCredentials({ accountId: acc.id, phone: "12" }), Code.InvalidArgument, /phone/);
      await rejectsWith(sys.accounts.updateCredentials({ accountId: "0123456789abcdef01234567", password: "x" }), Code.NotFound);
    });

    test("concurrent UpdateCredentials calls each keep their change (none is lost to another's write) and each is audited once", async () => {
      const acc = await sys.accounts.createAccount({ platform: "vk", login: "upd-race", password: "old" });
      const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
      await Promise.all(keys.map((k) => sys.accounts.updateCredentials({ accountId: acc.id, additional: { [k]: k } })));
      const cred = await sys.accounts.getCredentials({ accountId: acc.id });
      assert.deepEqual(cred.additional, Object.fromEntries(keys.map((k) => [k, k])));
      const audit = await sys.db.query("SELECT 1 FROM audit_log WHERE account_id = $1 AND action = 'account.credentials_update'", [acc.id]);
      assert.equal(audit.rowCount, keys.length);
    });

    test("GetCredentials writes an audit record", async () => {
      const acc = await sys.accounts.createAccount({ platform: "mail", login: "audited", password: "pw" });
      await sys.accounts.getCredentials({ accountId: acc.id });
      const r = await sys.db.query<{ actor: string; peer: string }>("SELECT actor, peer FROM audit_log WHERE account_id = $1 AND action = 'credentials.read'", [acc.id]);
      assert.equal(r.rowCount, 1);
      assert.equal(r.rows[0].actor, "open-mode");
      assert.match(r.rows[0].peer, /127\.0\.0\.1/);
    });

    test("UpdateStatus validates transitions, answers the previous status by name, keeps history", async () => {
      const acc = await sys.accounts.createAccount({ platform: "telegram", login: "bob", password: "pw" });
      const r1 = await sys.accounts.updateStatus({ accountId: acc.id, status: AccountStatus.WARMING, reason: "warm up" });
      assert.deepEqual([r1.success, r1.previousStatus], [true, "ACCOUNT_STATUS_ACTIVE"]);
      const r2 = await sys.accounts.updateStatus({ accountId: acc.id, status: AccountStatus.DELETED, reason: "gone" });
      assert.equal(r2.previousStatus, "ACCOUNT_STATUS_WARMING");
      await rejectsWith(sys.accounts.updateStatus({ accountId: acc.id, status: AccountStatus.ACTIVE }), Code.FailedPrecondition, /ACCOUNT_STATUS_DELETED.*ACCOUNT_STATUS_ACTIVE/);
      const h = await sys.accounts.getStatusHistory({ accountId: acc.id });
      assert.deepEqual(
        h.changes.map((c) => [c.fromStatus, c.toStatus, c.reason, c.author]),
        [
          ["ACCOUNT_STATUS_WARMING", "ACCOUNT_STATUS_DELETED", "gone", "open-mode"],
          ["ACCOUNT_STATUS_ACTIVE", "ACCOUNT_STATUS_WARMING", "warm up", "open-mode"],
          ["", "ACCOUNT_STATUS_ACTIVE", "created", "open-mode"],
        ],
      );
    });

    test("bad input names the field; unknown ids are NOT_FOUND; duplicates ALREADY_EXISTS", async () => {
      await rejectsWith(sys.accounts.getAccount({ accountId: "" }), Code.InvalidArgument, /account_id/);
      await rejectsWith(sys.accounts.getAccount({ accountId: "nope" }), Code.InvalidArgument, /account_id.*24-hex/);
      await rejectsWith(sys.accounts.getAccount({ accountId: "0123456789abcdef01234567" }), Code.NotFound);
      await rejectsWith(sys.accounts.getCredentials({ accountId: "0123456789abcdef01234567" }), Code.NotFound);
      await rejectsWith(sys.accounts.createAccount({ platform: "vkk", login: "x", password: "y" }), Code.InvalidArgument, /platform/);
      await rejectsWith(sys.accounts.createAccount({ platform: "vk", login: "", password: "y" }), Code.InvalidArgument, /login/);
      await rejectsWith(sys.accounts.createAccount({ platform: "vk", login: "x", password: "y", phone: "123" }), Code.InvalidArgument, /phone/);
      await rejectsWith(sys.accounts.updateStatus({ accountId: "0123456789abcdef01234567", status: AccountStatus.UNSPECIFIED }), Code.InvalidArgument, /status/);
      await rejectsWith(sys.accounts.listAccounts({ pageSize: 5000 }), Code.InvalidArgument, /page_size must be between 1 and 1000, got 5000/);
      await rejectsWith(sys.accounts.listAccounts({ pageToken: "garbage" }), Code.InvalidArgument, /page_token/);
      await sys.accounts.createAccount({ platform: "max", login: "dup", password: "y" });
      await rejectsWith(sys.accounts.createAccount({ platform: "max", login: "dup", password: "y" }), Code.AlreadyExists, /dup/);
    });

    test("ImportAccounts keeps the good items when some are bad", async () => {
      const res = await sys.accounts.importAccounts({
        accounts: [
          { platform: "vk", login: "imp1", password: "p" },
          { platform: "nope", login: "imp2", password: "p" },
          { platform: "vk", login: "imp1", password: "p" },
          { platform: "vk", login: "imp3", password: "p" },
        ],
      });
      assert.equal(res.imported, 2);
      assert.equal(res.failed, 2);
      assert.match(res.results[1].error, /platform/);
      assert.match(res.results[2].error, /already exists/);
      assert.ok(res.results[3].accountId);
    });

    test("ListAccounts filters, pages with a keyset token stable under inserts, and counts", async () => {
      const made: string[] = [];
      for (let i = 0; i < 25; i++) made.push((await sys.accounts.createAccount({ platform: "max", login: `page-${i}`, password: "p", status: i % 5 === 0 ? AccountStatus.SUSPENDED : AccountStatus.UNSPECIFIED })).id);
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = await sys.accounts.listAccounts({ platform: "max", status: AccountStatus.ACTIVE, pageSize: 7, pageToken: token });
        assert.equal(page.totalCount, 21n); // 20 active page-* + "dup"
        seen.push(...page.accounts.map((a) => a.id));
        token = page.nextPageToken;
        if (pages++ === 0) await sys.accounts.createAccount({ platform: "vk", login: "inserted-mid-listing", password: "p" });
      } while (token);
      assert.equal(new Set(seen).size, seen.length, "no duplicates across pages");
      assert.equal(seen.length, 21);
      const suspended = await sys.accounts.listAccounts({ platform: "max", status: AccountStatus.SUSPENDED });
      assert.equal(suspended.accounts.length, 5);
      await rejectsWith(sys.accounts.listAccounts({ platform: "vk", pageToken: token || (await sys.accounts.listAccounts({ platform: "max", pageSize: 1 })).nextPageToken }), Code.InvalidArgument, /page_token/);
    });

    test("ListAccounts filters by label selector (ANDed) and login prefix; pages and counts under them", async () => {
      for (let i = 0; i < 12; i++) {
        const labels: Record<string, string> = { team: i % 2 ? "red" : "blue", batch: i < 6 ? "b1" : "b2" };
        await sys.accounts.createAccount({ platform: "telegram", login: `lbl_${i}`, password: "p", labels });
      }
      // "_" and "%" in the prefix are literal, not LIKE wildcards.
      await sys.accounts.createAccount({ platform: "telegram", login: "lblX9", password: "p", labels: { team: "red", batch: "b1" } });
      await sys.accounts.createAccount({ platform: "telegram", login: "l%b", password: "p", labels: { team: "red" } });

      const logins = async (req: Parameters<TestSystem["accounts"]["listAccounts"]>[0]) => {
        const out: string[] = [];
        let token = "";
        let total = -1n;
        do {
          const page = await sys.accounts.listAccounts({ ...req, pageSize: 2, pageToken: token });
          if (total >= 0n) assert.equal(page.totalCount, total, "total_count is the same on every page");
          total = page.totalCount;
          out.push(...page.accounts.map((a) => a.login));
          token = page.nextPageToken;
        } while (token);
        assert.equal(BigInt(out.length), total);
        return out;
      };
      assert.deepEqual(await logins({ labelSelector: ["team=red", "batch=b1"], loginPrefix: "lbl_" }), ["lbl_1", "lbl_3", "lbl_5"]);
      assert.deepEqual(await logins({ labelSelector: ["team=red", "batch=b1"] }), ["lbl_1", "lbl_3", "lbl_5", "lblX9"]);
      assert.deepEqual((await logins({ labelSelector: ["batch=b2"], platform: "telegram" })).length, 6);
      assert.deepEqual(await logins({ loginPrefix: "l%" }), ["l%b"]);
      assert.deepEqual(await logins({ loginPrefix: "lbl_1" }), ["lbl_1", "lbl_10", "lbl_11"]);
      assert.deepEqual(await logins({ labelSelector: ["team=green"] }), []);
      assert.deepEqual(await logins({ labelSelector: ["team=red"], status: AccountStatus.SUSPENDED }), []);

      await rejectsWith(sys.accounts.listAccounts({ labelSelector: ["team"] }), Code.InvalidArgument, /label_selector.*key=value/);
      await rejectsWith(sys.accounts.listAccounts({ labelSelector: ["=x"] }), Code.InvalidArgument, /label_selector/);
      await rejectsWith(sys.accounts.listAccounts({ labelSelector: ["a=1", "a=2"] }), Code.InvalidArgument, /label_selector.*twice/);
      // A token is bound to its filter.
      const first = await sys.accounts.listAccounts({ labelSelector: ["team=red"], pageSize: 1 });
      await rejectsWith(sys.accounts.listAccounts({ labelSelector: ["team=blue"], pageSize: 1, pageToken: first.nextPageToken }), Code.InvalidArgument, /page_token/);
    });
  });
}
