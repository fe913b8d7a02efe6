import { createSandboxSmsProvider } from "../sandbox/index.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import { createSms } from "../sms/sms.ts";
import { smsService } from "../sms/sms-service.ts";
import type { AppContext } from "./app-context.ts";
import { smsGauges } from "./store-gauges.ts";

/** SMSService over the sandbox's SMS provider; its GetCode waiters end before the gRPC drain. */
export async function mountSms(ctx: AppContext): Promise<ServiceBinding> {
  const provider = createSandboxSmsProvider({ baseUrl: ctx.sandbox.url, token: ctx.sandbox.token });
  ctx.releasers.add("sms-provider", () => provider.close());
  const sms = createSms({ db: ctx.db, providers: [provider], newId: ctx.newId, log: ctx.log, metrics: ctx.metrics });
  smsGauges(ctx.metrics, [provider]);
  await sms.start();
  // Waiting GetCode calls end at once with UNAVAILABLE ("call again") instead of holding shutdown
  // for the grace period (SHUTDOWN_ORDER).
  ctx.releasers.add("sms", () => sms.stop());
  return smsService(sms);
}
