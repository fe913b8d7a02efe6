import { useState } from "react";
import { Link, useSearchParams } from "wouter";
import { createColumnHelper, tableFeatures, useTable } from "@tanstack/react-table";
import { useQuery } from "@connectrpc/connect-query";
import { keepPreviousData } from "@tanstack/react-query";
import { AccountService, AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";
import type { Account } from "../../../src/gen/conveer/v1/account_pb.js";
import { PLATFORMS, enumValues, when } from "../api/format.ts";
import { ErrorBox, Empty, Loading } from "../components/Feedback.tsx";
import { StatusBadge } from "../components/StatusBadge.tsx";

const PAGE_SIZE = 50;
const features = tableFeatures({});
const col = createColumnHelper<typeof features, Account>();
const columns = col.columns([
  col.accessor("login", { header: "Login", cell: (c) => <Link href={`/accounts/${c.row.original.id}`}>{c.getValue()}</Link> }),
  col.accessor("platform", { header: "Platform" }),
  col.accessor("status", { header: "Status", cell: (c) => <StatusBadge status={c.getValue()} /> }),
  col.accessor("labels", {
    header: "Labels",
    cell: (c) =>
      Object.entries(c.getValue())
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
  }),
  col.accessor("createdAt", { header: "Created", cell: (c) => when(c.getValue()) }),
]);
const NO_ROWS: Account[] = [];

/**
 * Accounts: one server page at a time (keyset page tokens, so page 2,000 costs what page 1 does),
 * filtered by platform, status, labels and login prefix, every filter and the page kept in the URL.
 */
export function Accounts() {
  const [params, setParams] = useSearchParams();
  const filter = {
    platform: params.get("platform") ?? "",
    status: statusOf(params.get("status") ?? ""),
    labelSelector: (params.get("label") ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    loginPrefix: params.get("login") ?? "",
  };
  const pageToken = params.get("page") ?? "";
  // The tokens of the pages before this one, to step back; a reload starts over from page 1's link.
  const [previous, setPrevious] = useState<string[]>([]);
  const q = useQuery(AccountService.method.listAccounts, { ...filter, pageSize: PAGE_SIZE, pageToken }, { placeholderData: keepPreviousData });
  const table = useTable({ features, columns, data: q.data?.accounts ?? NO_ROWS });
  const set = (key: string, value: string) => {
    setPrevious([]);
    setParams((p) => {
      if (value) p.set(key, value);
      else p.delete(key);
      p.delete("page");
      return p;
    });
  };
  const goto = (token: string) =>
    setParams((p) => {
      if (token) p.set("page", token);
      else p.delete("page");
      return p;
    });
  return (
    <section>
      <h1>Accounts</h1>
      <Filters filter={filter} set={set} />
      {q.isError ? <ErrorBox error={q.error} what="Cannot list accounts" /> : null}
      {q.isPending ? <Loading what="accounts" /> : null}
      {q.data ? (
        <>
          <p className="count" role="status">
            {q.data.totalCount.toLocaleString()} account{q.data.totalCount === 1n ? "" : "s"} match
            {q.isPlaceholderData ? " (loading…)" : ""}
          </p>
          {q.data.accounts.length === 0 ? (
            <Empty>No accounts match these filters.</Empty>
          ) : (
            <div className="table-wrap">
              <table className="grid" aria-label="Accounts">
                <thead>
                  {table.getHeaderGroups().map((g) => (
                    <tr key={g.id}>
                      {g.headers.map((h) => (
                        <th key={h.id} scope="col">
                          <table.FlexRender header={h} />
                        </th>
                      ))}
                    </tr>
                  ))}
                </thead>
                <tbody>
                  {table.getRowModel().rows.map((r) => (
                    <tr key={r.original.id}>
                      {r.getAllCells().map((c) => (
                        <td key={c.id} data-label={String(c.column.columnDef.header)}>
                          <table.FlexRender cell={c} />
                        </td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <nav className="pager" aria-label="Pages of accounts">
            <button type="button" disabled={!pageToken} onClick={() => (setPrevious([]), goto(""))}>
              First
            </button>
            <button type="button" disabled={previous.length === 0} onClick={() => (goto(previous[previous.length - 1]), setPrevious(previous.slice(0, -1)))}>
              Previous
            </button>
            <button type="button" disabled={!q.data.nextPageToken} onClick={() => (setPrevious([...previous, pageToken]), goto(q.data.nextPageToken))}>
              Next
            </button>
          </nav>
        </>
      ) : null}
    </section>
  );
}

/** A status name from the URL ("BANNED"); UNSPECIFIED (all) when unknown. */
function statusOf(name: string): AccountStatus {
  const v = (AccountStatus as unknown as Record<string, number>)[name];
  return typeof v === "number" ? (v as AccountStatus) : AccountStatus.UNSPECIFIED;
}

type Filter = { platform: string; status: AccountStatus; labelSelector: string[]; loginPrefix: string };

/** The filter bar; text fields apply on Enter or when they lose focus. */
function Filters(props: { filter: Filter; set(key: string, value: string): void }) {
  const f = props.filter;
  return (
    <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
      <label>
        Platform
        <select value={f.platform} onChange={(e) => props.set("platform", e.target.value)}>
          <option value="">all</option>
          {PLATFORMS.map((p) => (
            <option key={p}>{p}</option>
          ))}
        </select>
      </label>
      <label>
        Status
        <select value={f.status ? AccountStatus[f.status] : ""} onChange={(e) => props.set("status", e.target.value)}>
          <option value="">all</option>
          {enumValues(AccountStatus).map((s) => (
            <option key={s.value}>{s.name}</option>
          ))}
        </select>
      </label>
      <TextFilter label="Labels (key=value, …)" name="label" value={f.labelSelector.join(",")} set={props.set} />
      <TextFilter label="Login starts with" name="login" value={f.loginPrefix} set={props.set} />
    </form>
  );
}

function TextFilter(props: { label: string; name: string; value: string; set(key: string, value: string): void }) {
  const [text, setText] = useState(props.value);
  const apply = () => text !== props.value && props.set(props.name, text.trim());
  return (
    <label>
      {props.label}
      <input
        name={props.name}
        value={text}
        onChange={(e) => setText(e.target.value)}
        onBlur={apply}
        onKeyDown={(e) => e.key === "Enter" && apply()}
      />
    </label>
  );
}
