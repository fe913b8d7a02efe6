import { createContextKey } from "@connectrpc/connect";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Principal } from "../auth/tokens.ts";
import { AppError } from "../errors.ts";

/**
 * What a service module hands the transport: the generated service descriptor, its
 * implementation (Connect's ServiceImpl shape, so the same code serves gRPC and, later, the
 * browser), and the scope each method needs.
 */
export type ServiceBinding<S extends DescService = DescService> = {
  service: S;
  impl: ServiceImpl<S>;
  /** Method local name (e.g. "allocateProxy") → required scope. A method missing here is refused. */
  scopes: { [K in keyof S["method"]]: string };
};

/** Declares a binding with its types checked against the descriptor. */
export function bindService<S extends DescService>(b: ServiceBinding<S>): ServiceBinding {
  return b as unknown as ServiceBinding;
}

/** The authenticated caller of the current call. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "principal" });

/** The caller's principal; the transport sets it before any handler runs. */
export function principalOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw new Error("no principal on the call context: the auth interceptor did not run");
  return p;
}

/** The caller's address ("ipv4:127.0.0.1:51000"), for audit records. */
export const peerKey = createContextKey<string>("", { description: "peer" });

/**
 * The reason a finished call's context is aborted with (its deadline timer and links released).
 * Built once: an Error (or the DOMException an abort without a reason makes) per call, with its
 * stack, cost ~10% of a GetAccount's server CPU and ~3% of an ExecuteAction's.
 */
export const CALL_FINISHED = new AppError("CANCELLED", "the call has finished");
