import { AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";

/** An account status as a coloured word. */
export function StatusBadge(props: { status: AccountStatus }) {
  const name = AccountStatus[props.status] ?? String(props.status);
  return <span className={`badge status-${name.toLowerCase()}`}>{name}</span>;
}
