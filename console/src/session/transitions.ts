import { AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";

/**
 * The status changes the server allows, as data: a copy of the table in
 * src/accounts/account-status.ts (the console shares only src/gen with the server). It only
 * decides which choices are offered; the server refuses any other with FAILED_PRECONDITION.
 */
export const NEXT_STATUSES: Readonly<Record<AccountStatus, readonly AccountStatus[]>> = {
  [AccountStatus.UNSPECIFIED]: [],
  [AccountStatus.CREATING]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.ACTIVE]: [AccountStatus.WARMING, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.WARMING]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.SUSPENDED, AccountStatus.DELETED],
  [AccountStatus.BANNED]: [AccountStatus.ACTIVE, AccountStatus.DELETED],
  [AccountStatus.SUSPENDED]: [AccountStatus.ACTIVE, AccountStatus.BANNED, AccountStatus.DELETED],
  [AccountStatus.DELETED]: [],
};
