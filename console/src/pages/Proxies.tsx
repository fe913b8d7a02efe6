import { useState } from "react";
import { Link } from "wouter";
import { createColumnHelper } from "@tanstack/react-table";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { keepPreviousData, useQueryClient } from "@tanstack/react-query";
import { ProxyAllocationFilter, ProxyHealthFilter, ProxyService } from "../../../src/gen/conveer/v1/proxy_pb.js";
import type { Proxy } from "../../../src/gen/conveer/v1/proxy_pb.js";
import { enumValues, when } from "../api/format.ts";
import { ActionButton } from "../components/ActionButton.tsx";
import { DataTable } from "../components/DataTable.tsx";
import type { Features } from "../components/DataTable.tsx";
import { ErrorBox, Empty, LineResults, Loading } from "../components/Feedback.tsx";
import { SelectFilter, TextFilter, enumFromName } from "../components/Filters.tsx";
import { Pager } from "../components/Pager.tsx";
import { PasteForm } from "../components/PasteForm.tsx";
import { useUrlState } from "../components/url-state.ts";

const col = createColumnHelper<Features, Proxy>();
const columns = col.columns([
  col.display({ id: "address", header: "Proxy", cell: (c) => <code>{`${c.row.original.protocol}://${c.row.original.host}:${c.row.original.port}`}</code> }),
  col.accessor("healthy", { header: "Health", cell: (c) => (c.getValue() ? <span className="badge status-active">healthy</span> : <span className="badge status-banned">unhealthy</span>) }),
  col.display({
    id: "latency",
    header: "Latency (last check)",
    cell: (c) => {
      const p = c.row.original;
      if (!p.lastCheckedAt) return "not checked yet";
      return p.lastError ? <span title={p.lastError}>failed {when(p.lastCheckedAt)}: {p.lastError}</span> : `${p.lastLatencyMs} ms, ${when(p.lastCheckedAt)}`;
    },
  }),
  col.accessor("consecutiveFailures", { header: "Failures in a row" }),
  col.display({ id: "slots", header: "Slots used", cell: (c) => `${c.row.original.allocated} of ${c.row.original.capacity}` }),
  col.display({ id: "where", header: "Country / provider", cell: (c) => [c.row.original.country, c.row.original.provider].filter(Boolean).join(" / ") || "—" }),
  col.accessor("tags", { header: "Tags", cell: (c) => c.getValue().join(", ") || "—" }),
  col.accessor("accountIds", {
    header: "Accounts held",
    cell: (c) =>
      c.getValue().length === 0
        ? "—"
        : c.getValue().map((id) => (
            <Link key={id} href={`/accounts/${id}`} className="label">
              {id.slice(-6)}
            </Link>
          )),
  }),
  col.display({ id: "actions", header: "Actions", cell: (c) => <ProxyActions proxy={c.row.original} /> }),
]);
const HEALTH = enumValues(ProxyHealthFilter).map((v) => v.name);
const ALLOCATION = enumValues(ProxyAllocationFilter).map((v) => v.name);

/** The proxy pool: health, the last check's latency, failures, slots, tags, the accounts held; add, check now, remove. */
export function Proxies() {
  const url = useUrlState();
  const q = useQuery(
    ProxyService.method.listProxies,
    {
      health: enumFromName<ProxyHealthFilter>(ProxyHealthFilter, url.get("health")),
      allocation: enumFromName<ProxyAllocationFilter>(ProxyAllocationFilter, url.get("allocation")),
      tag: url.get("tag"),
      country: url.get("country"),
      pageSize: 50,
      pageToken: url.pageToken,
    },
    { placeholderData: keepPreviousData },
  );
  return (
    <section>
      <h1>Proxies</h1>
      <AddProxies />
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <SelectFilter label="Health" value={url.get("health")} options={HEALTH} set={(v) => url.set("health", v)} />
        <SelectFilter label="Allocation" value={url.get("allocation")} options={ALLOCATION} set={(v) => url.set("allocation", v)} />
        <TextFilter label="Tag" name="tag" value={url.get("tag")} set={(v) => url.set("tag", v)} />
        <TextFilter label="Country" name="country" value={url.get("country")} set={(v) => url.set("country", v)} />
      </form>
      {q.isError ? <ErrorBox error={q.error} what="Cannot list proxies" /> : null}
      {q.isPending ? <Loading what="proxies" /> : null}
      {q.data ? (
        <>
          <p className="count" role="status">
            {q.data.totalCount.toLocaleString()} prox{q.data.totalCount === 1n ? "y" : "ies"} match
          </p>
          {q.data.proxies.length === 0 ? <Empty>No proxies match.</Empty> : <DataTable label="Proxies" columns={columns} rows={q.data.proxies} rowKey={(p) => p.id} />}
          <Pager url={url} nextPageToken={q.data.nextPageToken} label="Pages of proxies" />
        </>
      ) : null}
    </section>
  );
}

/** Check now (the latency or the error of a real check through the proxy) and remove (what moved, what was released). */
function ProxyActions(props: { proxy: Proxy }) {
  const client = useQueryClient();
  const check = useMutation(ProxyService.method.checkHealth, { onSuccess: () => void client.invalidateQueries() });
  const remove = useMutation(ProxyService.method.removeProxy, { onSuccess: () => void client.invalidateQueries() });
  const h = check.data;
  return (
    <div className="row-actions">
      <ActionButton scope="proxies:write" onClick={() => check.mutate({ proxyId: props.proxy.id })} disabled={check.isPending}>
        Check now
      </ActionButton>
      <ActionButton scope="proxies:admin" className="danger" onClick={() => remove.mutate({ proxyId: props.proxy.id })} disabled={remove.isPending}>
        Remove
      </ActionButton>
      {h ? <small role="status">{h.healthy ? `healthy, ${h.latencyMs} ms to ${h.target}` : `failed: ${h.error}`}</small> : null}
      {remove.data ? <small role="status">{`removed: ${remove.data.accountsMoved} accounts moved, ${remove.data.accountsReleased} released`}</small> : null}
      {check.isError ? <ErrorBox error={check.error} /> : null}
      {remove.isError ? <ErrorBox error={remove.error} /> : null}
    </div>
  );
}

/** Add proxies by pasting URLs, one a line; each refused line is listed with the server's reason (its password never shown). */
function AddProxies() {
  const client = useQueryClient();
  const [capacity, setCapacity] = useState("1");
  const [tags, setTags] = useState("");
  const m = useMutation(ProxyService.method.addProxies, { onSuccess: () => void client.invalidateQueries() });
  return (
    <PasteForm
      title="Add proxies"
      label="Proxy URLs, one a line"
      format="Each line: scheme://user:pass@host:port (http, https or socks5)"
      verb="Add"
      scope="proxies:admin"
      fields={
        <>
          <label>
            Capacity
            <input type="number" min={1} value={capacity} onChange={(e) => setCapacity(e.target.value)} />
          </label>
          <label>
            Tags (comma-separated)
            <input value={tags} onChange={(e) => setTags(e.target.value)} />
          </label>
        </>
      }
      pending={m.isPending}
      error={m.error}
      send={(lines, sent) => {
        const tagList = tags.split(",").map((t) => t.trim()).filter(Boolean);
        m.mutate({ proxies: lines.map((url) => ({ url, capacity: Number(capacity) || 1, tags: tagList })) }, { onSuccess: sent });
      }}
    >
      {m.data ? (
        <LineResults
          summary={`${m.data.added} added, ${m.data.failed} refused.`}
          results={m.data.results}
          shown={m.variables?.proxies?.map((p) => (p.url ?? "").replace(/\/\/[^@/]*@/, "//…@")) ?? []}
        />
      ) : null}
    </PasteForm>
  );
}
