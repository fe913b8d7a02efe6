import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import { AppError } from "../errors.ts";

/**
 * Which status changes are legal. DELETED is final; a banned account can only be reinstated
 * (ACTIVE) or deleted; CREATING only moves forward.
 */
const NEXT: Record<AccountStatus, readonly AccountStatus[]> = {
  [AccountStatus.UNSPECIFIED]: [],
  [AccountStatus.CREATING]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.ACTIVE]: [AccountStatus.WARMING, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.WARMING]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.BANNED]: [AccountStatus.ACTIVE, AccountStatus.DELETED],
  [AccountStatus.SUSPENDED]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.DELETED],
  [AccountStatus.DELETED]: [],
};

/** The statuses from which a change to `to` is allowed. */
export function allowedInto(to: AccountStatus): AccountStatus[] {
  return (Object.keys(NEXT).map(Number) as AccountStatus[]).filter((from) => NEXT[from].includes(to));
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
  if (!NEXT[from]?.includes(to)) {
    const allowed = NEXT[from]?.map(statusName).join(", ") || "none (final)";
    throw new AppError("FAILED_PRECONDITION", `cannot change status from ${statusName(from)} to ${statusName(to)}; allowed from ${statusName(from)}: ${allowed}`);
  }
}
