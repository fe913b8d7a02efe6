import type { GenService } from "@bufbuild/protobuf/codegenv2";
import type { Platform } from "../domain.ts";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { bindService } from "../server/service-binding.ts";
import type { Platforms } from "./platforms.ts";

/** VKService, TelegramService, MailService and MaxService share this shape. */
type PlatformServiceDesc = typeof VKService;

/** Binds one platform's service (VKService, TelegramService, …) to the platform logic. */
export function platformService(service: GenService<PlatformServiceDesc["method"]> | PlatformServiceDesc, platform: Platform, platforms: Platforms) {
  return bindService({
    service: service as PlatformServiceDesc,
    scopes: {
      register: "platforms:write",
      executeAction: "platforms:write",
      checkAccountStatus: "platforms:read",
      getRegistration: "platforms:read",
      listRegistrations: "platforms:read",
    },
    impl: {
      register: (r, ctx) => platforms.register(platform, r, ctx.signal),
      executeAction: (r, ctx) => platforms.execute(platform, r.accountId, r.actionType, r.params, ctx.signal),
      checkAccountStatus: (r, ctx) => platforms.checkStatus(platform, r.accountId, ctx.signal),
      getRegistration: (r) => platforms.getRegistration(platform, r.registrationId),
      async listRegistrations(r) {
        const page = await platforms.listRegistrations(platform, r);
        return { registrations: page.registrations, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
    },
  });
}
