import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { RegistrationSchema, RegistrationState } from "../gen/conveer/v1/platform_pb.js";
import type { Registration } from "../gen/conveer/v1/platform_pb.js";
import type { Platform } from "../domain.ts";
import { invalidArgument, notFound, quote } from "../errors.ts";
import type { Queryable } from "../store/db.ts";
import { checkId } from "../store/ids.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import * as store from "./registration-store.ts";
import type { ListedRegistrationRow, RegistrationFilter } from "./registration-store.ts";

/** Reading registrations: GetRegistration and ListRegistrations, per platform. */

/** ListRegistrations' request, as the domain takes it. */
export type ListRegistrationsRequest = { state: RegistrationState; createdAfter?: Timestamp; createdBefore?: Timestamp; pageSize: number; pageToken: string; batchId: string };

/** What a batch id may be: RegisterRequest.batch_id and the ListRegistrations filter. */
export const BATCH_ID = /^[A-Za-z0-9._-]{1,64}$/;

const STATE_OF: Record<string, RegistrationState> = { running: RegistrationState.RUNNING, succeeded: RegistrationState.SUCCEEDED, failed: RegistrationState.FAILED };
const STATUS_OF: Partial<Record<RegistrationState, string>> = { [RegistrationState.RUNNING]: "running", [RegistrationState.SUCCEEDED]: "succeeded", [RegistrationState.FAILED]: "failed" };

/** A registrations row as the API's Registration. */
export function toRegistration(r: ListedRegistrationRow): Registration {
  return create(RegistrationSchema, {
    id: r.id,
    platform: r.platform,
    state: STATE_OF[r.status] ?? RegistrationState.UNSPECIFIED,
    step: r.step,
    failedStep: r.failed_step,
    error: r.error,
    login: r.login,
    accountId: r.account_id,
    proxyId: r.proxy_id,
    activationId: r.activation_id,
    batchId: r.batch_id ?? "",
    createdAt: timestampFromDate(r.created_at),
    updatedAt: timestampFromDate(r.updated_at),
    // A registration's last update is its end.
    finishedAt: r.status === "running" ? undefined : timestampFromDate(r.updated_at),
  });
}

/** GetRegistration: this platform's registration; NOT_FOUND for an unknown id or another platform's. */
export async function getRegistration(db: Queryable, platform: Platform, id: string): Promise<Registration> {
  checkId(id, "registration_id");
  const r = await store.readRegistration(db, platform, id);
  if (!r) throw notFound(`${platform} registration`, id);
  return toRegistration(r);
}

/** A timestamp filter field as an ISO string ("" when unset); INVALID_ARGUMENT when out of range. */
function instant(t: Timestamp | undefined, field: string): string {
  if (!t) return "";
  const d = timestampDate(t);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1970 || d.getUTCFullYear() > 9999) throw invalidArgument(field, `must be a time between 1970 and 9999, got seconds=${t.seconds}`);
  return d.toISOString();
}

/** ListRegistrations: a keyset page of this platform's registrations, newest first, and the filter's total. */
export async function listRegistrations(db: Queryable, platform: Platform, req: ListRegistrationsRequest): Promise<{ registrations: Registration[]; next: string; total: number }> {
  if (req.state !== RegistrationState.UNSPECIFIED && !STATUS_OF[req.state]) throw invalidArgument("state", `is not a known RegistrationState (${req.state})`);
  if (req.batchId && !BATCH_ID.test(req.batchId)) throw invalidArgument("batch_id", `must be 1-64 letters, digits, . _ or -, got ${quote(req.batchId)}`);
  const filter: RegistrationFilter = {
    platform,
    status: STATUS_OF[req.state] ?? "",
    createdAfter: instant(req.createdAfter, "created_after"),
    createdBefore: instant(req.createdBefore, "created_before"),
    batchId: req.batchId,
  };
  if (filter.createdAfter && filter.createdBefore && filter.createdAfter >= filter.createdBefore) {
    throw invalidArgument("created_after", `must be before created_before (${filter.createdAfter} >= ${filter.createdBefore})`);
  }
  const limit = pageSize(req.pageSize);
  const before = decodePageToken(req.pageToken, filter);
  const [rows, total] = await Promise.all([store.listRegistrations(db, filter, before, limit + 1), store.countRegistrations(db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "";
  return { registrations: page.map(toRegistration), next, total };
}
