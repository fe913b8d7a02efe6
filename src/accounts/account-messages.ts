import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountSchema, StatusChangeSchema } from "../gen/conveer/v1/account_pb.js";
import type { Account, StatusChange } from "../gen/conveer/v1/account_pb.js";
import { statusName } from "./account-status.ts";
import type { PublicAccountRow, StatusHistoryRow } from "./account-store.ts";

/** Maps a row to the API message (never secrets). */
export function toAccount(row: PublicAccountRow): Account {
  return create(AccountSchema, {
    id: row.id,
    platform: row.platform,
    login: row.login,
    status: row.status,
    statusReason: row.status_reason,
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
    hasPhone: row.has_phone,
    labels: row.labels,
  });
}

/** Maps a history row to the API message, statuses by name. */
export function toStatusChange(h: StatusHistoryRow): StatusChange {
  return create(StatusChangeSchema, {
    fromStatus: h.from_status === null ? "" : statusName(h.from_status),
    toStatus: statusName(h.to_status),
    reason: h.reason,
    author: h.author,
    changedAt: timestampFromDate(h.changed_at),
  });
}
