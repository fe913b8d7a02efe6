import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createToken } from "../auth/tokens.ts";
import { SMSService, SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { ListActivationsRequest } from "../gen/conveer/v1/sms_pb.js";
import { remoteClient } from "../server/clients.ts";
import { createIdGenerator } from "../store/ids.ts";
import { STORE_KINDS } from "../../test/support/store.ts";
import { startTestSystem } from "../../test/support/system.ts";
import type { TestSystem } from "../../test/support/system.ts";
import { rejectsWith } from "../../test/support/grpc.ts";

const newId = createIdGenerator();
const { SMS_STATUS_WAITING_CODE: WAITING, SMS_STATUS_CANCELLED: CANCELLED } = SMSStatus;

for (const kind of STORE_KINDS) {
  describe(`SMSService.ListActivations on ${kind}`, () => {
    let sys: TestSystem;
    let sms: Client<typeof SMSService>;
    let reader: Client<typeof SMSService>;
    let outsider: Client<typeof SMSService>;
    const sessions: Http2SessionManager[] = [];
    const rented: { id: string; service: string }[] = [];
    const cancelled = new Set<string>();

    before(async () => {
      sys = await startTestSystem(kind, { services: ["account", "proxy", "sms"] });
      const client = async (name: string, scopes: string[]) => remoteClient(SMSService, { addr: sys.addr("sms"), token: await createToken(sys.db, newId(), name, scopes), sessions });
      sms = await client("sms-admin", ["sms:write"]);
      reader = await client("sms-reader", ["sms:read"]);
      outsider = await client("accounts-only", ["accounts:read"]);
      for (const service of ["vk", "vk", "telegram", "vk", "mail", "telegram", "vk"]) rented.push({ id: (await sms.getNumber({ service })).id, service });
      for (const i of [1, 2, 6]) {
        assert.equal((await sms.cancelActivation({ activationId: rented[i].id })).success, true);
        cancelled.add(rented[i].id);
      }
    });
    after(async () => {
      for (const s of sessions) s.abort();
      await sys.stop();
    });

    /** Every page at page size 2, checking total_count on each; the ids in order. */
    async function ids(req: Omit<Partial<ListActivationsRequest>, "$typeName">): Promise<string[]> {
      const out: string[] = [];
      let token = "";
      let total: bigint | undefined;
      do {
        const page = await reader.listActivations({ ...req, pageSize: 2, pageToken: token });
        if (total !== undefined) assert.equal(page.totalCount, total);
        total = page.totalCount;
        out.push(...page.activations.map((a) => a.id));
        token = page.nextPageToken;
      } while (token);
      assert.equal(BigInt(out.length), total);
      return out;
    }
    const newestFirst = (pick: (r: { id: string; service: string }) => boolean) => rented.filter(pick).map((r) => r.id).reverse();

    test("newest first, every field of the activation, keyset pages with total_count", async () => {
      assert.deepEqual(await ids({}), newestFirst(() => true));
      const page = await reader.listActivations({ pageSize: 1 });
      const a = page.activations[0];
      assert.equal(a.id, rented[6].id);
      assert.deepEqual([a.service, a.provider, a.status, a.refunded], ["vk", "sandbox", CANCELLED, true]);
      assert.match(a.phone, /^\+?\d+$/);
      assert.ok(a.price > 0);
      assert.ok(timestampDate(a.createdAt!) <= timestampDate(a.expiresAt!));
    });

    test("filters by status, service and provider, alone and together", async () => {
      assert.deepEqual(await ids({ status: CANCELLED }), newestFirst((r) => cancelled.has(r.id)));
      assert.deepEqual(await ids({ status: WAITING }), newestFirst((r) => !cancelled.has(r.id)));
      assert.deepEqual(await ids({ service: "vk" }), newestFirst((r) => r.service === "vk"));
      assert.deepEqual(await ids({ service: "telegram", status: CANCELLED }), newestFirst((r) => r.service === "telegram" && cancelled.has(r.id)));
      assert.deepEqual(await ids({ provider: "sandbox", service: "mail" }), newestFirst((r) => r.service === "mail"));
      assert.deepEqual(await ids({ provider: "elsewhere" }), []);
      assert.deepEqual(await ids({ service: "max" }), []);
    });

    test("bad filters and tokens are INVALID_ARGUMENT; the scope is sms:read", async () => {
      await rejectsWith(reader.listActivations({ service: "icq" }), Code.InvalidArgument, /service/);
      await rejectsWith(reader.listActivations({ status: 42 as SMSStatus }), Code.InvalidArgument, /status/);
      await rejectsWith(reader.listActivations({ pageSize: 1001 }), Code.InvalidArgument, /page_size/);
      const first = await reader.listActivations({ service: "vk", pageSize: 1 });
      await rejectsWith(reader.listActivations({ service: "telegram", pageSize: 1, pageToken: first.nextPageToken }), Code.InvalidArgument, /page_token/);
      await rejectsWith(outsider.listActivations({}), Code.PermissionDenied, /sms:read/);
    });
  });
}
