import { useEffect, useState } from "react";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { AccountService, AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";
import type { Account } from "../../../src/gen/conveer/v1/account_pb.js";
import { ActionButton } from "../components/ActionButton.tsx";
import { ErrorBox } from "../components/Feedback.tsx";
import { NEXT_STATUSES } from "../../../src/accounts/status-transitions.ts";

/** How long revealed credentials stay on screen. */
export const REVEAL_SECONDS = 30;

/** Change status: only the transitions the server allows are offered, and a reason is required. */
export function ChangeStatus(props: { account: Account }) {
  const client = useQueryClient();
  const next = NEXT_STATUSES[props.account.status] ?? [];
  const [to, setTo] = useState<AccountStatus | undefined>();
  const [reason, setReason] = useState("");
  const m = useMutation(AccountService.method.updateStatus, {
    onSuccess: () => {
      setReason("");
      setTo(undefined);
      void client.invalidateQueries();
    },
  });
  if (next.length === 0) return <p className="empty">No status change is possible from {AccountStatus[props.account.status]}.</p>;
  return (
    <form
      className="action-form"
      aria-label="Change status"
      onSubmit={(e) => {
        e.preventDefault();
        if (to !== undefined && reason.trim()) m.mutate({ accountId: props.account.id, status: to, reason: reason.trim() });
      }}
    >
      <label>
        New status
        <select value={to ?? ""} onChange={(e) => setTo(e.target.value ? (Number(e.target.value) as AccountStatus) : undefined)}>
          <option value="">choose…</option>
          {next.map((s) => (
            <option key={s} value={s}>
              {AccountStatus[s]}
            </option>
          ))}
        </select>
      </label>
      <label>
        Reason (required)
        <input value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1000} />
      </label>
      <ActionButton scope="accounts:write" type="submit" disabled={to === undefined || !reason.trim() || m.isPending}>
        Change status
      </ActionButton>
      {m.isError ? <ErrorBox error={m.error} /> : null}
    </form>
  );
}

/** Reveal credentials: needs credentials:read, is audited by the server, and hides again after 30 s. */
export function RevealCredentials(props: { accountId: string }) {
  const client = useQueryClient();
  const m = useMutation(AccountService.method.getCredentials, { onSuccess: () => void client.invalidateQueries() });
  const [left, setLeft] = useState(0);
  useEffect(() => {
    if (!m.data) return;
    setLeft(REVEAL_SECONDS);
    const started = Date.now();
    const timer = setInterval(() => {
      const rest = REVEAL_SECONDS - Math.floor((Date.now() - started) / 1000);
      if (rest > 0) return setLeft(rest);
      clearInterval(timer);
      m.reset();
    }, 250);
    return () => clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [m.data]);
  const c = m.data;
  return (
    <div className="action-form">
      {c ? (
        <div className="secret" aria-live="polite" data-testid="credentials">
          <dl className="fields">
            <dt>Login</dt>
            <dd>
              <code>{c.login}</code>
            </dd>
            <dt>Password</dt>
            <dd>
              <code>{c.password}</code>
            </dd>
            <dt>Phone</dt>
            <dd>
              <code>{c.phone || "—"}</code>
            </dd>
          </dl>
          <small>Hidden again in {left} s.</small>{" "}
          <button type="button" onClick={() => m.reset()}>
            Hide now
          </button>
        </div>
      ) : (
        <ActionButton scope="credentials:read" onClick={() => m.mutate({ accountId: props.accountId })} disabled={m.isPending}>
          Reveal credentials
        </ActionButton>
      )}
      {m.isError ? <ErrorBox error={m.error} /> : null}
    </div>
  );
}

/** What a DeleteAccount let go of, as a sentence (empty when nothing). */
function letGo(r: { releasedProxyId: string; stoppedWarmingTaskId: string; cancelledActivationId: string }): string {
  return [
    r.releasedProxyId ? ` Released proxy ${r.releasedProxyId}.` : "",
    r.stoppedWarmingTaskId ? ` Stopped warming task ${r.stoppedWarmingTaskId}.` : "",
    r.cancelledActivationId ? ` Cancelled activation ${r.cancelledActivationId}.` : "",
  ].join("");
}

/** Delete: a reason, then a second click to confirm; shows what was released. */
export function DeleteAccount(props: { account: Account }) {
  const client = useQueryClient();
  const [reason, setReason] = useState("");
  const [confirming, setConfirming] = useState(false);
  const m = useMutation(AccountService.method.deleteAccount, { onSuccess: () => void client.invalidateQueries() });
  if (props.account.status === AccountStatus.DELETED) {
    // A delete marks the account first, then lets go of what it holds: one cut short by an
    // unreachable service is finished by deleting again, which changes no status or history.
    const released = m.data ? letGo(m.data) : "";
    return (
      <div className="action-form">
        {m.data ? <p role="status">{m.data.deleted ? "Deleted." : ""}{released || (m.data.deleted ? "" : " It held nothing more.")}</p> : null}
        <ActionButton scope="accounts:admin" type="button" disabled={m.isPending} onClick={() => m.mutate({ accountId: props.account.id, reason: props.account.statusReason || "deleted" })}>
          Let go of what it still holds
        </ActionButton>
        {m.isError ? <ErrorBox error={m.error} /> : null}
      </div>
    );
  }
  return (
    <form
      className="action-form"
      aria-label="Delete account"
      onSubmit={(e) => {
        e.preventDefault();
        if (!confirming) return setConfirming(true);
        m.mutate({ accountId: props.account.id, reason: reason.trim() });
        setConfirming(false);
      }}
    >
      <label>
        Delete reason (required)
        <input value={reason} onChange={(e) => (setReason(e.target.value), setConfirming(false))} maxLength={1000} />
      </label>
      <ActionButton scope="accounts:admin" type="submit" className="danger" disabled={!reason.trim() || m.isPending}>
        {confirming ? "Confirm delete" : "Delete account"}
      </ActionButton>
      {m.isError ? <ErrorBox error={m.error} /> : null}
    </form>
  );
}
