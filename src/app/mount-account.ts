import { createAccounts } from "../accounts/accounts.ts";
import { accountService } from "../accounts/account-service.ts";
import type { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import type { SMSService } from "../gen/conveer/v1/sms_pb.js";
import type { WarmingService } from "../gen/conveer/v1/warming_pb.js";
import type { ServiceBinding } from "../server/service-binding.ts";
import type { AppContext } from "./app-context.ts";
import { accountGauges } from "./store-gauges.ts";

/** AccountService: accounts and their sealed credentials; DeleteAccount reaches the proxy, warming and SMS peers; conveer_accounts on /metrics. Holds nothing to release. */
export function mountAccount(ctx: AppContext): ServiceBinding {
  accountGauges(ctx.metrics, ctx.db);
  return accountService(
    createAccounts({
      db: ctx.db,
      vault: ctx.vault,
      newId: ctx.newId,
      peers: {
        proxies: () => ctx.peer<typeof ProxyService>("proxy", "account-service"),
        warming: () => ctx.peer<typeof WarmingService>("warming", "account-service"),
        sms: () => ctx.peer<typeof SMSService>("sms", "account-service"),
      },
    }),
  );
}
