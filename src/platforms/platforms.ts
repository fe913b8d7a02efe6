import type { ActionType, RegisterRequest } from "../gen/conveer/v1/platform_pb.js";
import type { Platform } from "../domain.ts";
import { checkStatus, execute } from "./actions.ts";
import { platformsContext } from "./platforms-context.ts";
import type { PlatformsDeps } from "./platforms-context.ts";
import { getRegistration, listRegistrations } from "./registration-list.ts";
import type { ListRegistrationsRequest } from "./registration-list.ts";
import { recoverAbandoned, register } from "./registration.ts";

export type { PlatformOptions, PlatformsDeps } from "./platforms-context.ts";
export { STEPS } from "./registration.ts";

/**
 * The platform side: the registration conveyor (a durable step machine, registration.ts), actions
 * and status checks (actions.ts), for every platform through its bound driver. Transport-free.
 */
export function createPlatforms(deps: PlatformsDeps) {
  const ctx = platformsContext(deps);
  return {
    /** Runs the conveyor for one new account; answers success=false with the failed step on failure. */
    register: (platform: Platform, req: RegisterRequest, signal?: AbortSignal) => register(ctx, platform, req, signal),
    /** One registration of the platform (GetRegistration). */
    getRegistration: (platform: Platform, id: string) => getRegistration(ctx.db, platform, id),
    /** A keyset page of the platform's registrations, newest first (ListRegistrations). */
    listRegistrations: (platform: Platform, req: ListRegistrationsRequest) => listRegistrations(ctx.db, platform, req),
    /** Cleans up registrations whose process died; returns how many. */
    recoverAbandoned: () => recoverAbandoned(ctx),
    /** Runs one action with the account's credentials and proxy. */
    execute: (platform: Platform, accountId: string, actionType: ActionType, params: Record<string, string>, signal?: AbortSignal) => execute(ctx, platform, accountId, actionType, params, signal),
    /** Asks the platform and brings AccountService's status in line (with history). */
    checkStatus: (platform: Platform, accountId: string, signal?: AbortSignal) => checkStatus(ctx, platform, accountId, signal),
  };
}

/** The platform services' API. */
export type Platforms = ReturnType<typeof createPlatforms>;
