import { SMSService } from "../gen/conveer/v1/sms_pb.js";
import { bindService, principalOf } from "../server/service-binding.ts";
import type { Sms } from "./sms.ts";

/** SMSService over the SMS domain: validate, call, map. */
export function smsService(sms: Sms) {
  return bindService({
    service: SMSService,
    scopes: {
      getNumber: "sms:write",
      getCode: "sms:write",
      cancelActivation: "sms:write",
      getBalance: "sms:read",
      listActivations: "sms:read",
    },
    impl: {
      getNumber: (req, ctx) => sms.getNumber(req, principalOf(ctx).name),
      // GetCode honours the caller: its cancellation ends the wait, its deadline bounds it.
      getCode: (req, ctx) => sms.getCode(req.activationId, req.timeoutSeconds, { signal: ctx.signal, timeoutMs: ctx.timeoutMs() }),
      cancelActivation: (req, ctx) => sms.cancel(req.activationId, principalOf(ctx).name),
      getBalance: (req) => sms.balance(req.provider),
      async listActivations(req) {
        const page = await sms.list(req);
        return { activations: page.activations, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
    },
  });
}
