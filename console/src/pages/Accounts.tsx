import { useMemo, useState } from "react";
import { Link } from "wouter";
import { createColumnHelper } from "@tanstack/react-table";
import { useQuery } from "@connectrpc/connect-query";
import { keepPreviousData } from "@tanstack/react-query";
import { AccountService, AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";
import type { Account } from "../../../src/gen/conveer/v1/account_pb.js";
import { PLATFORMS, enumValues, when } from "../api/format.ts";
import { DataTable } from "../components/DataTable.tsx";
import type { Features } from "../components/DataTable.tsx";
import { ErrorBox, Empty, Loading } from "../components/Feedback.tsx";
import { SelectFilter, TextFilter, enumFromName } from "../components/Filters.tsx";
import { Pager } from "../components/Pager.tsx";
import { StatusBadge } from "../components/StatusBadge.tsx";
import { useUrlState } from "../components/url-state.ts";
import { StartWarmingFor } from "./WarmingActions.tsx";
import { ImportAccounts } from "./ImportAccounts.tsx";

const PAGE_SIZE = 50;
const col = createColumnHelper<Features, Account>();
/** Which accounts are selected (kept across pages until cleared), for the select column. */
type Selection = { has(id: string): boolean; toggle(id: string): void };
const selectColumn = (sel: Selection) =>
  col.display({
    id: "select",
    header: "Select",
    cell: (c) => <input type="checkbox" aria-label={`Select ${c.row.original.login}`} checked={sel.has(c.row.original.id)} onChange={() => sel.toggle(c.row.original.id)} />,
  });
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
const STATUS_NAMES = enumValues(AccountStatus).map((s) => s.name);

/**
 * Accounts: one server page at a time (keyset page tokens, so page 2,000 costs what page 1 does),
 * filtered by platform, status, labels and login prefix, every filter and the page kept in the URL.
 */
export function Accounts() {
  const url = useUrlState();
  const filter = {
    platform: url.get("platform"),
    status: enumFromName<AccountStatus>(AccountStatus, url.get("status")),
    labelSelector: url.get("label").split(",").map((s) => s.trim()).filter(Boolean),
    loginPrefix: url.get("login"),
  };
  const q = useQuery(AccountService.method.listAccounts, { ...filter, pageSize: PAGE_SIZE, pageToken: url.pageToken }, { placeholderData: keepPreviousData });
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const withSelect = useMemo(
    () => [selectColumn({ has: (id) => selected.has(id), toggle: (id) => setSelected((s) => (s.has(id) ? new Set([...s].filter((x) => x !== id)) : new Set([...s, id]))) }), ...columns],
    [selected],
  );
  return (
    <section>
      <h1>Accounts</h1>
      <ImportAccounts />
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <SelectFilter label="Platform" value={filter.platform} options={PLATFORMS} set={(v) => url.set("platform", v)} />
        <SelectFilter label="Status" value={url.get("status")} options={STATUS_NAMES} set={(v) => url.set("status", v)} />
        <TextFilter label="Labels (key=value, …)" name="label" value={url.get("label")} set={(v) => url.set("label", v)} />
        <TextFilter label="Login starts with" name="login" value={filter.loginPrefix} set={(v) => url.set("login", v)} />
      </form>
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
            <DataTable label="Accounts" columns={withSelect} rows={q.data.accounts} rowKey={(a) => a.id} />
          )}
          <Pager url={url} nextPageToken={q.data.nextPageToken} label="Pages of accounts" />
          {selected.size ? (
            <div className="card">
              <h2>
                {selected.size} selected{" "}
                <button type="button" onClick={() => setSelected(new Set())}>
                  Clear
                </button>
              </h2>
              <StartWarmingFor accountIds={[...selected]} label="Start warming for the selected accounts" />
            </div>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
