import { AdminService } from "../gen/conveer/v1/admin_pb.js";
import { ADMIN_SCOPE, ANY_CALLER } from "../auth/scopes.ts";
import { bindService, peerKey, principalOf } from "../server/service-binding.ts";
import type { HandlerContext } from "@connectrpc/connect";
import type { Admin } from "./admin.ts";

/** BackupStore's pieces: well under the default 4 MiB message limit of gRPC clients. */
const BACKUP_CHUNK = 1 << 20;

/** The caller as the audit log records it. */
const actorOf = (ctx: HandlerContext) => ({ name: principalOf(ctx).name, peer: ctx.values.get(peerKey) });

/** AdminService over the admin domain: validate, call, map. Every method needs `admin` but WhoAmI, which any caller may ask. */
export function adminService(admin: Admin) {
  return bindService({
    service: AdminService,
    scopes: {
      whoAmI: ANY_CALLER,
      createToken: ADMIN_SCOPE,
      listTokens: ADMIN_SCOPE,
      revokeToken: ADMIN_SCOPE,
      listAuditEntries: ADMIN_SCOPE,
      startKeyRotation: ADMIN_SCOPE,
      getKeyRotation: ADMIN_SCOPE,
      backupStore: ADMIN_SCOPE,
    },
    impl: {
      async whoAmI(_req, ctx) {
        const p = principalOf(ctx);
        return { tokenName: p.name, scopes: [...p.scopes].sort(), open: await admin.isOpen() };
      },
      createToken: (req, ctx) => admin.createToken(req.name, req.scopes, actorOf(ctx)),
      listTokens: async () => ({ tokens: await admin.listTokens() }),
      revokeToken: async (req, ctx) => ({ revoked: await admin.revokeToken(req.name, actorOf(ctx)) }),
      async listAuditEntries(req) {
        const page = await admin.listAudit(req);
        return { entries: page.entries, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
      startKeyRotation: (req, ctx) => admin.startKeyRotation(req.batchSize, actorOf(ctx)),
      getKeyRotation: (req) => admin.getKeyRotation(req.rotationId),
      async *backupStore(_req, ctx) {
        const { dump, rowCounts } = await admin.backupStore(actorOf(ctx));
        yield { rowCounts, totalBytes: BigInt(dump.length) };
        for (let at = 0; at < dump.length; at += BACKUP_CHUNK) yield { data: dump.subarray(at, at + BACKUP_CHUNK) };
      },
    },
  });
}
