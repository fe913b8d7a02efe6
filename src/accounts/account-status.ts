import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { AppError } from "../errors.ts";
import { NEXT_STATUSES } from "./status-transitions.ts";

/** The statuses from which a change to `to` is allowed. */
export function allowedInto(to: AccountStatus): AccountStatus[] {
  return (Object.keys(NEXT_STATUSES).map(Number) as AccountStatus[]).filter((from) => NEXT_STATUSES[from].includes(to));
}

/** The enum name of a status ("ACCOUNT_STATUS_ACTIVE"). */
export function statusName(s: AccountStatus): string {
  return `ACCOUNT_STATUS_${AccountStatus[s] ?? String(s)}`;
}

/** The short name of a status ("ACTIVE"), as the audit log shows it. */
export function shortStatus(s: AccountStatus): string {
  return AccountStatus[s] ?? String(s);
}

/** Parses "ACTIVE", "active" or "ACCOUNT_STATUS_ACTIVE"; undefined when unknown. */
export function parseStatus(text: string): AccountStatus | undefined {
  const key = text.trim().toUpperCase().replace(/^ACCOUNT_STATUS_/, "");
  const v = (AccountStatus as unknown as Record<string, number>)[key];
  return typeof v === "number" && v !== AccountStatus.UNSPECIFIED ? (v as AccountStatus) : undefined;
}

/** Throws FAILED_PRECONDITION naming both states unless from → to is allowed. */
export function assertTransition(from: AccountStatus, to: AccountStatus): void {
  if (!NEXT_STATUSES[from]?.includes(to)) {
    const allowed = NEXT_STATUSES[from]?.map(statusName).join(", ") || "none (final)";
    throw new AppError("FAILED_PRECONDITION", `cannot change status from ${statusName(from)} to ${statusName(to)}; allowed from ${statusName(from)}: ${allowed}`);
  }
}
