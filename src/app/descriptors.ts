import type { DescService } from "@bufbuild/protobuf";
import { AccountService } from "../gen/conveer/v1/account_pb.js";
import { ProxyService } from "../gen/conveer/v1/proxy_pb.js";
import { WarmingService } from "../gen/conveer/v1/warming_pb.js";
import { SMSService } from "../gen/conveer/v1/sms_pb.js";
import { VKService } from "../gen/conveer/v1/vk_pb.js";
import { TelegramService } from "../gen/conveer/v1/telegram_pb.js";
import { MailService } from "../gen/conveer/v1/mail_pb.js";
import { MaxService } from "../gen/conveer/v1/max_pb.js";
import type { ServiceName } from "../config/config.ts";

/** The generated descriptor of each service. */
export const DESCRIPTORS: Record<ServiceName, DescService> = {
  account: AccountService,
  proxy: ProxyService,
  warming: WarmingService,
  sms: SMSService,
  vk: VKService,
  telegram: TelegramService,
  mail: MailService,
  max: MaxService,
};
