import { Code } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { Link } from "wouter";
import { AccountService } from "../../../src/gen/conveer/v1/account_pb.js";
import type { Account } from "../../../src/gen/conveer/v1/account_pb.js";
import { AdminService } from "../../../src/gen/conveer/v1/admin_pb.js";
import { ProxyService } from "../../../src/gen/conveer/v1/proxy_pb.js";
import { WarmingService, WarmingStatus } from "../../../src/gen/conveer/v1/warming_pb.js";
import { isCode } from "../api/errors.ts";
import { when } from "../api/format.ts";
import { ActionButton } from "../components/ActionButton.tsx";
import { ErrorBox, QueryView } from "../components/Feedback.tsx";
import { StatusBadge } from "../components/StatusBadge.tsx";
import { ChangeStatus, DeleteAccount, RevealCredentials } from "./AccountActions.tsx";

/** One account: its fields and labels, actions, status history, proxy, warming task and audit entries. */
export function AccountDetail(props: { id: string }) {
  const account = useQuery(AccountService.method.getAccount, { accountId: props.id });
  return (
    <section>
      <p>
        <Link href="/accounts">← Accounts</Link>
      </p>
      <QueryView query={account} what="the account">
        {(a) => (
          <>
            <h1>
              {a.login} <StatusBadge status={a.status} />
            </h1>
            <div className="cards">
              <Fields account={a} />
              <div className="card">
                <h2>Actions</h2>
                <ChangeStatus account={a} />
                <RevealCredentials accountId={a.id} />
                <DeleteAccount account={a} />
              </div>
              <History id={a.id} />
              <HeldProxy id={a.id} />
              <Warming id={a.id} />
              <Audit id={a.id} />
            </div>
          </>
        )}
      </QueryView>
    </section>
  );
}

function Fields(props: { account: Account }) {
  const a = props.account;
  const labels = Object.entries(a.labels);
  return (
    <div className="card">
      <h2>Fields</h2>
      <dl className="fields">
        <dt>Id</dt>
        <dd>
          <code>{a.id}</code>
        </dd>
        <dt>Platform</dt>
        <dd>{a.platform}</dd>
        <dt>Status reason</dt>
        <dd>{a.statusReason || "—"}</dd>
        <dt>Phone stored</dt>
        <dd>{a.hasPhone ? "yes" : "no"}</dd>
        <dt>Created</dt>
        <dd>{when(a.createdAt)}</dd>
        <dt>Updated</dt>
        <dd>{when(a.updatedAt)}</dd>
        <dt>Labels</dt>
        <dd>{labels.length ? labels.map(([k, v]) => <span key={k} className="label">{`${k}=${v}`}</span>) : "—"}</dd>
      </dl>
    </div>
  );
}

function History(props: { id: string }) {
  const q = useQuery(AccountService.method.getStatusHistory, { accountId: props.id });
  return (
    <div className="card">
      <h2>Status history</h2>
      <QueryView query={q} what="status history" isEmpty={(d) => d.changes.length === 0}>
        {(d) => (
          <ol className="timeline" aria-label="Status history">
            {[...d.changes].reverse().map((c, i) => (
              <li key={i}>
                <time>{when(c.changedAt)}</time>{" "}
                <strong>
                  {c.fromStatus ? `${c.fromStatus.replace("ACCOUNT_STATUS_", "")} → ` : "created "}
                  {c.toStatus.replace("ACCOUNT_STATUS_", "")}
                </strong>{" "}
                by {c.author || "—"}
                {c.reason ? <span className="reason">: {c.reason}</span> : null}
              </li>
            ))}
          </ol>
        )}
      </QueryView>
    </div>
  );
}

function HeldProxy(props: { id: string }) {
  const q = useQuery(ProxyService.method.getProxyForAccount, { accountId: props.id }, { retry: false });
  return (
    <div className="card">
      <h2>Proxy held</h2>
      {q.isError && isCode(q.error, Code.NotFound) ? (
        <p className="empty">This account holds no proxy.</p>
      ) : (
        <QueryView query={q} what="the proxy">
          {(p) => (
            <p>
              <code>
                {p.protocol}://{p.host}:{p.port}
              </code>{" "}
              {p.country ? `(${p.country}) ` : ""}
              {p.provider}
              <br />
              <small>
                id {p.id}, lease until {when(p.expiresAt)}
              </small>
            </p>
          )}
        </QueryView>
      )}
    </div>
  );
}

function Warming(props: { id: string }) {
  const q = useQuery(WarmingService.method.listWarmingTasks, { accountId: props.id, pageSize: 1 });
  const client = useQueryClient();
  const start = useMutation(WarmingService.method.startWarming, { onSuccess: () => void client.invalidateQueries() });
  const open = q.data?.tasks[0] && [WarmingStatus.PENDING, WarmingStatus.RUNNING, WarmingStatus.PAUSED].includes(q.data.tasks[0].status);
  return (
    <div className="card">
      <h2>Warming</h2>
      {q.data && !open ? (
        <ActionButton scope="warming:write" onClick={() => start.mutate({ accountId: props.id })} disabled={start.isPending}>
          Start warming (default scenario)
        </ActionButton>
      ) : null}
      {start.isError ? <ErrorBox error={start.error} /> : null}
      <QueryView query={q} what="warming tasks" isEmpty={(d) => d.tasks.length === 0} empty="No warming task for this account.">
        {(d) => {
          const t = d.tasks[0];
          return (
            <>
              <p>
                Task <Link href={`/warming/${t.id}`}>{t.id.slice(-8)}</Link>, scenario {t.scenarioId}: {WarmingStatus[t.status]}, day {t.currentDay} of {t.totalDays}
              </p>
              <progress max={100} value={t.progress} aria-label="Warming progress">
                {t.progress} %
              </progress>{" "}
              {t.progress} % · {t.actionsCompleted} done, {t.actionsFailed} failed
              {t.error ? <p className="error">{t.error}</p> : null}
            </>
          );
        }}
      </QueryView>
    </div>
  );
}

function Audit(props: { id: string }) {
  const q = useQuery(AdminService.method.listAuditEntries, { accountId: props.id, pageSize: 20 }, { retry: false });
  return (
    <div className="card">
      <h2>Audit entries</h2>
      {q.isError ? (
        <ErrorBox error={q.error} what="Cannot load the audit log" />
      ) : (
        <QueryView query={q} what="audit entries" isEmpty={(d) => d.entries.length === 0}>
          {(d) => (
            <ul className="audit" aria-label="Audit entries">
              {d.entries.map((e) => (
                <li key={String(e.id)}>
                  <time>{when(e.at)}</time> <strong>{e.action}</strong> by {e.actor}
                  {e.detail ? `: ${e.detail}` : ""}
                </li>
              ))}
            </ul>
          )}
        </QueryView>
      )}
    </div>
  );
}
