import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CreateAccountRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { createIdGenerator } from "../store/ids.ts";
import { createVault } from "../vault/vault.ts";
import { STORE_KINDS, freshStore } from "../../test/support/store.ts";
import { createAccounts } from "./accounts.ts";

// GetCredentials reads are batched (one statement for the reads of one turn of the event loop),
// each with its own audit record: a batch must neither lose a record nor give one read another's.
for (const kind of STORE_KINDS) {
  describe(`credentials reads in batches on ${kind}`, () => {
    let store: Awaited<ReturnType<typeof freshStore>>;
    before(async () => {
      store = await freshStore(kind);
    });
    after(() => store.drop());

    test("concurrent reads by different readers: each answers its own account and writes exactly its own audit record; an unknown id writes none", async () => {
      const newId = createIdGenerator();
      const accounts = createAccounts({ db: store.db, vault: await createVault(store.db, randomBytes(32), newId), newId });
      const made = await Promise.all(Array.from({ length: 30 }, (_, i) => accounts.create(create(CreateAccountRequestSchema, { platform: "vk", login: `cred-${i}`, password: `pw-${i}` }), "seed")));
      // Each account read twice, by two readers, all at once; one read of an id that does not exist.
      const reads = made.flatMap((a, i) => [
        { id: a.id, reader: `reader-${i % 3}`, want: `pw-${i}` },
        { id: a.id, reader: "second", want: `pw-${i}` },
      ]);
      const missing = "0123456789abcdef0123abcd";
      const got = await Promise.allSettled([...reads.map((r) => accounts.credentials(r.id, r.reader, `peer-${r.reader}`)), accounts.credentials(missing, "x", "y")]);
      reads.forEach((r, i) => assert.equal((got[i] as PromiseFulfilledResult<{ password: string }>).value.password, r.want));
      assert.equal(got.at(-1)?.status, "rejected");
      const audit = await store.db.query<{ account_id: string; actor: string; peer: string }>(
        "SELECT account_id, actor, peer FROM audit_log WHERE action = 'credentials.read' ORDER BY id",
      );
      const key = (x: { account_id: string; actor: string; peer: string }) => `${x.account_id} ${x.actor} ${x.peer}`;
      assert.deepEqual(audit.rows.map(key).sort(), reads.map((r) => key({ account_id: r.id, actor: r.reader, peer: `peer-${r.reader}` })).sort());
    });
  });
}
