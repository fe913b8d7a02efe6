import { SMSStatus } from "../gen/conveer/v1/sms_pb.js";

/**
 * How an activation's status moves when its rental ends, as data: the sweeper (the rental expired)
 * and CancelActivation (the client ended it) decide here; the SQL only writes the result.
 */

const S = SMSStatus;

/** A status change with the reason recorded in the history. */
export type Change = { readonly to: SMSStatus; readonly reason: string };

/** Statuses still waiting for a code. */
export const OPEN: ReadonlySet<number> = new Set<number>([S.SMS_STATUS_PENDING, S.SMS_STATUS_WAITING_CODE]);

const EXPIRED: Change = Object.freeze({ to: S.SMS_STATUS_FAILED, reason: "expired without a code" });
const ENDED_AFTER_CODE: Change = Object.freeze({ to: S.SMS_STATUS_COMPLETED, reason: "rental ended after the code arrived" });
const USED: Change = Object.freeze({ to: S.SMS_STATUS_COMPLETED, reason: "completed: the code was used" });
const CANCELLED: Change = Object.freeze({ to: S.SMS_STATUS_CANCELLED, reason: "cancelled" });

/** The change when an activation's rental expires: no code → FAILED, code → COMPLETED; undefined once ended. */
export function onExpiry(status: number): Change | undefined {
  if (OPEN.has(status)) return EXPIRED;
  return status === S.SMS_STATUS_CODE_RECEIVED ? ENDED_AFTER_CODE : undefined;
}

/** The change when the client cancels: before the code → CANCELLED, after it → COMPLETED; undefined once ended. */
export function onCancel(status: number): Change | undefined {
  if (OPEN.has(status)) return CANCELLED;
  return status === S.SMS_STATUS_CODE_RECEIVED ? USED : undefined;
}

/** A rule (onCancel, onExpiry) as the table the store applies in one statement: each status it changes, with the change. */
export type ChangeTable = { from: number[]; to: number[]; reason: string[] };

/** The table of a rule, over every status. */
export function changeTable(rule: (status: number) => Change | undefined): ChangeTable {
  const t: ChangeTable = { from: [], to: [], reason: [] };
  for (const status of Object.values(S)) {
    const c = typeof status === "number" ? rule(status) : undefined;
    if (!c) continue;
    t.from.push(status as number);
    t.to.push(c.to);
    t.reason.push(c.reason);
  }
  return t;
}
