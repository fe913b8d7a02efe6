import { useState } from "react";
import { createColumnHelper } from "@tanstack/react-table";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { keepPreviousData, useQueryClient } from "@tanstack/react-query";
import { AdminService } from "../../../src/gen/conveer/v1/admin_pb.js";
import type { AuditEntry } from "../../../src/gen/conveer/v1/admin_pb.js";
import { when } from "../api/format.ts";
import { ActionButton } from "../components/ActionButton.tsx";
import { DataTable } from "../components/DataTable.tsx";
import type { Features } from "../components/DataTable.tsx";
import { ErrorBox, Empty, Loading, QueryView } from "../components/Feedback.tsx";
import { DateFilter, TextFilter, utcDay } from "../components/Filters.tsx";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Pager } from "../components/Pager.tsx";
import { useUrlState } from "../components/url-state.ts";
import { useSession } from "../session/session.tsx";
import { TOKEN_SCOPES as SCOPES } from "../session/scopes.ts";


/** Admin: tokens (create shows the secret once; revoke) and the audit log with filters, on AdminService. */
export function Admin() {
  return (
    <section>
      <h1>Admin</h1>
      <div className="cards">
        <Tokens />
        <Audit />
      </div>
    </section>
  );
}

function Tokens() {
  const client = useQueryClient();
  const { identity } = useSession();
  const q = useQuery(AdminService.method.listTokens, {}, { retry: false });
  const create = useMutation(AdminService.method.createToken, { onSuccess: () => void client.invalidateQueries() });
  const revoke = useMutation(AdminService.method.revokeToken, { onSuccess: () => void client.invalidateQueries() });
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>([]);
  return (
    <div className="card wide">
      <h2>Tokens</h2>
      {identity?.known ? (
        <p>
          Signed in as <strong>{identity.name}</strong> with {identity.scopes.join(", ")}.
        </p>
      ) : null}
      <QueryView query={q} what="tokens" isEmpty={(d) => d.tokens.length === 0}>
        {(d) => (
          <ul className="audit" aria-label="Tokens">
            {d.tokens.map((t) => (
              <li key={t.name}>
                <strong>{t.name}</strong>: {t.scopes.join(", ")} · created {when(t.createdAt)}
                {t.revokedAt ? ` · revoked ${when(t.revokedAt)}` : (
                  <>
                    {" "}
                    <ActionButton scope="admin" className="danger" onClick={() => revoke.mutate({ name: t.name })}>
                      Revoke
                    </ActionButton>
                  </>
                )}
              </li>
            ))}
          </ul>
        )}
      </QueryView>
      <form className="action-form" aria-label="Create a token" onSubmit={(e) => (e.preventDefault(), create.mutate({ name: name.trim(), scopes }))}>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={64} />
        </label>
        <fieldset className="scopes">
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s} className="check">
              <input type="checkbox" checked={scopes.includes(s)} onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} /> {s}
            </label>
          ))}
        </fieldset>
        <ActionButton scope="admin" type="submit" disabled={!name.trim() || scopes.length === 0 || create.isPending}>
          Create token
        </ActionButton>
      </form>
      {create.data ? (
        <div className="secret" role="status">
          Token <strong>{create.data.token?.name}</strong> created. Its secret is shown this once: <code>{create.data.secret}</code>{" "}
          <button type="button" onClick={() => create.reset()}>
            I have copied it
          </button>
        </div>
      ) : null}
      {create.isError ? <ErrorBox error={create.error} /> : null}
      {revoke.isError ? <ErrorBox error={revoke.error} /> : null}
    </div>
  );
}

const col = createColumnHelper<Features, AuditEntry>();
const columns = col.columns([
  col.accessor("at", { header: "When", cell: (c) => when(c.getValue()) }),
  col.accessor("actor", { header: "Token" }),
  col.accessor("action", { header: "Action" }),
  col.accessor("accountId", { header: "Account", cell: (c) => c.getValue() || "—" }),
  col.accessor("target", { header: "Target", cell: (c) => c.getValue() || "—" }),
  col.accessor("detail", { header: "Detail", cell: (c) => c.getValue() || "—" }),
  col.accessor("peer", { header: "Peer" }),
]);

function Audit() {
  const url = useUrlState();
  // Whole UTC days: from the start of "from" to the end of "to".
  const after = utcDay(url.get("from"));
  const before = utcDay(url.get("to"), 1);
  const q = useQuery(
    AdminService.method.listAuditEntries,
    {
      actor: url.get("actor"),
      action: url.get("action"),
      accountId: url.get("account"),
      after: after && timestampFromDate(after),
      before: before && timestampFromDate(before),
      pageSize: 50,
      pageToken: url.pageToken,
    },
    { placeholderData: keepPreviousData, retry: false },
  );
  return (
    <div className="card wide">
      <h2>Audit log</h2>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <TextFilter label="Token" name="actor" value={url.get("actor")} set={(v) => url.set("actor", v)} />
        <TextFilter label="Action (exact, or a prefix ending in .)" name="action" value={url.get("action")} set={(v) => url.set("action", v)} />
        <TextFilter label="Account id" name="account" value={url.get("account")} set={(v) => url.set("account", v)} />
        <DateFilter label="From (UTC day)" value={url.get("from")} set={(v) => url.set("from", v)} />
        <DateFilter label="To (UTC day)" value={url.get("to")} set={(v) => url.set("to", v)} />
      </form>
      {q.isError ? <ErrorBox error={q.error} what="Cannot read the audit log" /> : null}
      {q.isPending ? <Loading what="audit entries" /> : null}
      {q.data ? (
        <>
          <p className="count">{q.data.totalCount.toLocaleString()} entries match</p>
          {q.data.entries.length === 0 ? <Empty>No audit entries match.</Empty> : <DataTable label="Audit log" columns={columns} rows={q.data.entries} rowKey={(e) => String(e.id)} />}
          <Pager url={url} nextPageToken={q.data.nextPageToken} label="Pages of the audit log" />
        </>
      ) : null}
    </div>
  );
}
