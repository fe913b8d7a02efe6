import type { Logger } from "pino";
import type { Proxy } from "../gen/conveer/v1/proxy_pb.js";
import type { Platform } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { ProxyEndpoint } from "../proxies/proxy-dial.ts";
import { batched } from "../store/batched.ts";
import type { Batched } from "../store/batched.ts";
import type { Db } from "../store/db.ts";
import type { PlatformDriver } from "./driver.ts";
import type { PlatformPeers } from "./peers.ts";
import { advance } from "./registration-store.ts";
import type { Advance } from "./registration-store.ts";

/** Settings of the platform services. */
export type PlatformOptions = { codeTimeoutSeconds: number; leaseMs: number };

/** What the registration conveyor reports: a registration ended, succeeded (step "") or failed at a step (conveer_registrations_total). */
export type RegistrationMetrics = { registrationEnded(platform: string, outcome: "succeeded" | "failed", step: string): void };

/** Dependencies of the platform services. */
export type PlatformsDeps = {
  db: Db;
  drivers: Partial<Record<Platform, PlatformDriver>>;
  peers: PlatformPeers;
  newId: () => string;
  log: Logger;
  options: PlatformOptions;
  /** None: registrations are not counted. */
  metrics?: RegistrationMetrics;
};

/** What the platform services' module functions share: the dependencies, and the registrations' step writes batched. */
export type PlatformsContext = Readonly<PlatformsDeps & { advance: Batched<Advance, boolean> }>;

/** The platform services' context: concurrent registrations' moves to their next step share one statement. */
export function platformsContext(deps: PlatformsDeps): PlatformsContext {
  // One move statement at a time: the steps of concurrent registrations that end while it runs share the next.
  return { ...deps, advance: batched((items) => advance(deps.db, items), { oneInFlight: true }) };
}

/** The driver bound to a platform; FAILED_PRECONDITION when none is. */
export function driverFor(ctx: PlatformsContext, platform: Platform): PlatformDriver {
  const d = ctx.drivers[platform];
  if (!d) throw new AppError("FAILED_PRECONDITION", `no driver configured for platform ${platform}; bind one in CONVEER_PLATFORM_DRIVERS (e.g. ${platform}=sandbox)`, { reason: "NO_DRIVER", metadata: { platform } });
  return d;
}

/** A ProxyService answer as what a driver dials. */
export const endpoint = (p: Proxy): ProxyEndpoint => ({ protocol: p.protocol as ProxyEndpoint["protocol"], host: p.host, port: p.port, username: p.username, password: p.password });
