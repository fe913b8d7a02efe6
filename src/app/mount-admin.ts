import { createAdmin } from "../admin/admin.ts";
import { adminService } from "../admin/admin-service.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";

/**
 * AdminService (tokens, the audit log, key rotation, WhoAmI): mounted in every process, served on
 * its HTTP port only. A key rotation started here runs in this process's background and ends
 * (FAILED, saying why) between two batches when the process stops.
 */
export function mountAdmin(ctx: AppContext): ServiceBinding {
  const admin = createAdmin({ db: ctx.db, vault: ctx.vault, newId: ctx.newId, log: ctx.log.child({ component: "admin" }), auth: ctx.auth });
  ctx.releasers.add("key-rotation", () => admin.stop());
  return adminService(admin);
}
