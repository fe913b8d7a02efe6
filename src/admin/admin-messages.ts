import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApiTokenSchema, AuditEntrySchema, KeyRotationSchema, KeyRotationState } from "../gen/conveer/v1/admin_pb.js";
import type { ApiToken, AuditEntry, KeyRotation } from "../gen/conveer/v1/admin_pb.js";
import type { AuditRow } from "../audit/audit-log.ts";
import type { TokenRow } from "../auth/tokens.ts";
import type { RotationRow } from "./rotation-store.ts";

/** A token row as the API shows it (never its hash). */
export function toApiToken(r: TokenRow): ApiToken {
  return create(ApiTokenSchema, {
    name: r.name,
    scopes: r.scopes,
    createdAt: timestampFromDate(r.created_at),
    revokedAt: r.revoked_at ? timestampFromDate(r.revoked_at) : undefined,
  });
}

/** An audit_log row as the API shows it. */
export function toAuditEntry(r: AuditRow): AuditEntry {
  return create(AuditEntrySchema, {
    id: BigInt(r.id),
    at: timestampFromDate(r.at),
    actor: r.actor,
    peer: r.peer,
    action: r.action,
    accountId: r.account_id,
    target: r.target,
    detail: r.detail,
  });
}

const STATES = { RUNNING: KeyRotationState.RUNNING, SUCCEEDED: KeyRotationState.SUCCEEDED, FAILED: KeyRotationState.FAILED } as const;

/** A key_rotations row as the API shows it, with what is still under older keys now. */
export function toKeyRotation(r: RotationRow, remaining: number): KeyRotation {
  return create(KeyRotationSchema, {
    id: r.id,
    state: STATES[r.state],
    keyId: r.key_id,
    total: BigInt(r.total),
    done: BigInt(r.done),
    remaining: BigInt(remaining),
    startedAt: timestampFromDate(r.started_at),
    finishedAt: r.finished_at ? timestampFromDate(r.finished_at) : undefined,
    error: r.error,
    startedBy: r.started_by,
  });
}
