import { useMemo, useRef } from "react";
import { Link } from "wouter";
import { createColumnHelper } from "@tanstack/react-table";
import { useQuery } from "@connectrpc/connect-query";
import { keepPreviousData } from "@tanstack/react-query";
import { WarmingService, WarmingStatus } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../../../src/gen/conveer/v1/warming_pb.js";
import { PLATFORMS, enumValues, when } from "../api/format.ts";
import { useLiveTasks } from "../api/live-tasks.ts";
import type { LiveTask } from "../api/live-tasks.ts";
import { DataTable } from "../components/DataTable.tsx";
import type { Features } from "../components/DataTable.tsx";
import { ErrorBox, Empty, Loading } from "../components/Feedback.tsx";
import { SelectFilter, TextFilter, enumFromName } from "../components/Filters.tsx";
import { Pager } from "../components/Pager.tsx";
import { useUrlState } from "../components/url-state.ts";
import { BulkActions, StartWarming, TaskActions } from "./WarmingActions.tsx";

const col = createColumnHelper<Features, WarmingTask>();
const columns = col.columns([
  col.accessor("accountLogin", { header: "Account", cell: (c) => <Link href={`/accounts/${c.row.original.accountId}`}>{c.getValue() || c.row.original.accountId}</Link> }),
  col.accessor("platform", { header: "Platform" }),
  col.accessor("scenarioId", { header: "Scenario", cell: (c) => <Link href={`/warming/${c.row.original.id}`} aria-label={`${c.getValue()} task of ${c.row.original.accountLogin}`}>{c.getValue()}</Link> }),
  col.accessor("status", { header: "Status", cell: (c) => <span className={`badge warming-${WarmingStatus[c.getValue()].toLowerCase()}`}>{WarmingStatus[c.getValue()]}</span> }),
  col.accessor("progress", {
    header: "Progress",
    cell: (c) => (
      <span className="progress-cell">
        <progress max={100} value={c.getValue()} aria-label={`Progress of ${c.row.original.accountLogin || c.row.original.id}`} /> <span data-testid="progress">{c.getValue()} %</span>
      </span>
    ),
  }),
  col.display({ id: "day", header: "Day", cell: (c) => `${c.row.original.currentDay} of ${c.row.original.totalDays}` }),
  col.display({ id: "actions-done", header: "Done / failed", cell: (c) => `${c.row.original.actionsCompleted} / ${c.row.original.actionsFailed}` }),
  col.accessor("nextActionAt", { header: "Next action", cell: (c) => when(c.getValue()) }),
  col.display({ id: "ops", header: "Actions", cell: (c) => <TaskActions task={c.row.original} /> }),
]);
const STATUS_NAMES = enumValues(WarmingStatus).map((s) => s.name);

/** Warming tasks with live progress from StreamEvents; filters in the URL; one task or a filtered set paused, resumed or stopped. */
export function Warming() {
  const url = useUrlState();
  const filter = { status: enumFromName<WarmingStatus>(WarmingStatus, url.get("status")), platform: url.get("platform"), scenarioId: url.get("scenario") };
  const q = useQuery(WarmingService.method.listWarmingTasks, { ...filter, pageSize: 100, pageToken: url.pageToken }, { placeholderData: keepPreviousData, refetchInterval: 15_000 });
  const { live, stream, version, events } = useLiveTasks();
  // A row keeps its object while neither its listing nor its live state changed, so only the rows an event touched render again.
  const merged = useRef(new Map<string, { t: WarmingTask; l: LiveTask; row: WarmingTask }>());
  const rows = useMemo(
    () => {
      const next = new Map<string, { t: WarmingTask; l: LiveTask; row: WarmingTask }>();
      const out = (q.data?.tasks ?? []).map((t) => {
        const l = live.get(t.id);
        if (!l) return t;
        const had = merged.current.get(t.id);
        // Events newer than the listed page win; an older listing never moves progress back.
        const row =
          had && had.t === t && had.l === l
            ? had.row
            : { ...t, progress: Math.max(t.progress, l.progress ?? 0), actionsCompleted: Math.max(t.actionsCompleted, l.completed ?? 0), actionsFailed: Math.max(t.actionsFailed, l.failed ?? 0), status: l.status ?? t.status };
        next.set(t.id, { t, l, row });
        return row;
      });
      merged.current = next;
      return out;
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [q.data, version],
  );
  return (
    <section>
      <h1>Warming</h1>
      <StartWarming />
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <SelectFilter label="Status" value={url.get("status")} options={STATUS_NAMES} set={(v) => url.set("status", v)} />
        <SelectFilter label="Platform" value={filter.platform} options={PLATFORMS} set={(v) => url.set("platform", v)} />
        <TextFilter label="Scenario" name="scenario" value={filter.scenarioId} set={(v) => url.set("scenario", v)} />
      </form>
      <p role="status" className="count" data-testid="stream-state">
        Live updates: {stream.state}
        {stream.error ? ` (${stream.error})` : ""} · <span data-testid="events-seen">{events}</span> events since this page opened
      </p>
      {q.isError ? <ErrorBox error={q.error} what="Cannot list warming tasks" /> : null}
      {q.isPending ? <Loading what="warming tasks" /> : null}
      {q.data ? (
        <>
          <p className="count">
            {q.data.totalCount.toLocaleString()} task{q.data.totalCount === 1n ? "" : "s"} match
          </p>
          <BulkActions filter={filter} total={q.data.totalCount} />
          {rows.length === 0 ? <Empty>No warming tasks match.</Empty> : <DataTable label="Warming tasks" columns={columns} rows={rows} rowKey={(t) => t.id} memoRows />}
          <Pager url={url} nextPageToken={q.data.nextPageToken} label="Pages of warming tasks" />
        </>
      ) : null}
    </section>
  );
}
