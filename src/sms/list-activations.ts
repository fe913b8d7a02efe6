import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";
import type { SMSActivation } from "../gen/conveer/v1/sms_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { invalidArgument, quote } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import { toActivation } from "./messages.ts";
import type { SmsContext } from "./sms-context.ts";
import * as store from "./sms-store.ts";

/** ListActivations' request fields. */
export type ActivationQuery = { status: SMSStatus; service: string; provider: string; pageSize: number; pageToken: string };

/** A keyset page of activations, newest first, and the total for the filter. */
export async function listActivations(ctx: SmsContext, q: ActivationQuery): Promise<{ activations: SMSActivation[]; next: string; total: number }> {
  if (!(q.status in SMSStatus)) throw invalidArgument("status", `is not a known SMSStatus (${q.status})`);
  if (q.service && !isPlatform(q.service)) throw invalidArgument("service", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(q.service)}`);
  if (q.provider.length > 100) throw invalidArgument("provider", `must be at most 100 characters, got ${q.provider.length}`);
  const limit = pageSize(q.pageSize);
  const filter = { status: q.status, service: q.service, provider: q.provider };
  const before = decodePageToken(q.pageToken, filter);
  const [rows, total] = await Promise.all([store.listActivations(ctx.db, filter, before, limit + 1), store.countActivations(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "";
  return { activations: page.map(toActivation), next, total };
}
