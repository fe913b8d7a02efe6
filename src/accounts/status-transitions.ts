import { AccountStatus } from "../gen/conveer/v1/account_pb.js";

/**
 * Which status changes are legal, as data (no imports but the generated enum, so the console
 * offers exactly these choices: console/src/pages/AccountActions.tsx). DELETED is final; a banned
 * account can only be reinstated (ACTIVE) or deleted; CREATING only moves forward.
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
