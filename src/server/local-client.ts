import { create } from "@bufbuild/protobuf";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallOptions, Client, HandlerContext } from "@connectrpc/connect";
import type { Principal } from "../auth/tokens.ts";
import { CallContext } from "./call-context.ts";
import { CALL_FINISHED } from "./service-binding.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { checkRequest } from "./request-check.ts";
import { toStatus } from "./status.ts";
import { withCallDeadline } from "../store/call-deadline.ts";
import { traceLocal } from "../telemetry/call-spans.ts";
import { tracingEnabled } from "../telemetry/tracing.ts";

type UntypedImpl = Record<string, (req: unknown, ctx: HandlerContext) => unknown>;

/**
 * A typed client that calls a service in this process directly: no sockets and no
 * serialization, the same Client shape as a remote gRPC client, and errors as the same
 * ConnectError codes, so a caller cannot tell (nor needs to) which one it was given. Requests pass
 * the same check (checkRequest) as on a gRPC port.
 */
export function localClient<S extends DescService>(binding: ServiceBinding, principal: Principal): Client<S> {
  const impl = binding.impl as unknown as UntypedImpl;
  const client: Record<string, unknown> = {};
  const traced = tracingEnabled();
  for (const method of binding.service.methods) {
    const fn = impl[method.localName];
    const call = async (req: unknown, opts?: CallOptions) => {
      const deadline = opts?.timeoutMs ? Date.now() + opts.timeoutMs : undefined;
      const ctx = new CallContext({
        service: binding.service,
        method,
        protocolName: "local",
        url: `/${binding.service.typeName}/${method.name}`,
        deadline,
        requestSignal: opts?.signal,
        principal,
        peer: "local",
      });
      try {
        const input = create(method.input, req as never);
        checkRequest(method.input, input);
        return create(method.output, (await withCallDeadline(deadline, () => fn(input, ctx))) as never);
      } catch (err) {
        const s = toStatus(err);
        const e = new ConnectError(s.message, s.code as number as Code, undefined, undefined, err);
        e.details = s.details ?? [];
        throw e;
      } finally {
        ctx.abort(CALL_FINISHED);
      }
    };
    // With a tracer provider registered: a span per peer call, a child of the caller's, active in the peer's handler.
    client[method.localName] = traced ? (req: unknown, opts?: CallOptions) => traceLocal(binding.service.typeName, method.name, () => call(req, opts)) : call;
  }
  return client as Client<S>;
}
