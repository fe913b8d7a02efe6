import { useMemo, useState } from "react";
import { createQueryOptions, useQuery, useTransport } from "@connectrpc/connect-query";
import { useQueries } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WarmingService } from "../../../src/gen/conveer/v1/warming_pb.js";
import { PLATFORMS } from "../api/format.ts";
import { Chart } from "../components/Chart.tsx";
import { ErrorBox, Loading, QueryView } from "../components/Feedback.tsx";
import { SelectFilter } from "../components/Filters.tsx";
import { useUrlState } from "../components/url-state.ts";

/** Ranges back from this browser's now; "all" (the default) sets no bounds, so a server whose clock runs faster (CONVEER_TIME_SCALE) still shows its days. */
const RANGES: Record<string, number> = { all: 0, "24h": 1, "7d": 7, "30d": 30, "90d": 90 };

/** GetStatistics as charts: actions per day (completed, failed), success rate per day, totals by action type. */
export function Statistics() {
  const url = useUrlState();
  const range = url.get("range") in RANGES ? url.get("range") : "all";
  const [now] = useState(() => Date.now());
  const q = useQuery(WarmingService.method.getStatistics, {
    platform: url.get("platform"),
    from: RANGES[range] ? timestampFromDate(new Date(now - RANGES[range] * 86_400_000)) : undefined,
    to: RANGES[range] ? timestampFromDate(new Date(now + 60_000)) : undefined,
  });
  const perDay = useMemo(() => {
    const days = q.data?.byDay ?? [];
    const x = days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
    const done = days.map((d) => Number(d.completed));
    const failed = days.map((d) => Number(d.failed));
    const rate = days.map((d) => (Number(d.completed + d.failed) ? (100 * Number(d.completed)) / Number(d.completed + d.failed) : 0));
    return { counts: [x, done, failed] as [number[], number[], number[]], rate: [x, rate] as [number[], number[]] };
  }, [q.data]);
  return (
    <section>
      <h1>Statistics</h1>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <SelectFilter label="Platform" value={url.get("platform")} options={PLATFORMS} set={(v) => url.set("platform", v)} />
        <label>
          Range
          <select value={range} onChange={(e) => url.set("range", e.target.value)}>
            {Object.keys(RANGES).map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
      </form>
      <QueryView query={q} what="statistics">
        {(st) => (
          <div className="cards">
            <div className="card">
              <h2>Totals</h2>
              <dl className="fields">
                <dt>Actions done</dt>
                <dd data-testid="actions-completed">{st.actionsCompleted.toLocaleString()}</dd>
                <dt>Actions failed</dt>
                <dd>{st.actionsFailed.toLocaleString()}</dd>
                <dt>Success rate</dt>
                <dd>{(st.successRate * 100).toFixed(1)} %</dd>
                <dt>Mean action time</dt>
                <dd>{st.meanActionDurationMs.toFixed(0)} ms</dd>
                <dt>Tasks</dt>
                <dd>
                  {Object.entries(st.tasksByStatus)
                    .map(([k, v]) => `${k.replace("WARMING_STATUS_", "")} ${v}`)
                    .join(", ") || "—"}
                </dd>
              </dl>
            </div>
            <div className="card wide">
              {st.byDay.length ? (
                <>
                  <Chart title="Actions per day" data={perDay.counts} series={[{ label: "completed" }, { label: "failed" }]} bars yLabel="actions" />
                  <Chart title="Success rate per day (%)" data={perDay.rate} series={[{ label: "success %" }]} yLabel="%" />
                  <ByTypePerDay days={st.byDay.map((d) => d.day)} platform={url.get("platform")} />
                </>
              ) : (
                <p className="empty">No actions in this range.</p>
              )}
            </div>
            <div className="card">
              <h2>By action type</h2>
              <div className="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
              <table className="grid" aria-label="Actions by type">
                <thead>
                  <tr>
                    <th scope="col">Type</th>
                    <th scope="col">Completed</th>
                    <th scope="col">Failed</th>
                    <th scope="col">Mean ms</th>
                  </tr>
                </thead>
                <tbody>
                  {st.byActionType.map((t) => (
                    <tr key={t.actionType}>
                      <td>{t.actionType}</td>
                      <td>{String(t.completed)}</td>
                      <td>{String(t.failed)}</td>
                      <td>{t.meanDurationMs.toFixed(0)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              </div>
            </div>
          </div>
        )}
      </QueryView>
    </section>
  );
}

/** Days drawn by type: the last this many of the range (one GetStatistics per day). */
const TYPE_DAYS = 14;

/**
 * Actions per day by type: GetStatistics gives per-type totals for a range, so each of the last
 * TYPE_DAYS days of the range is asked for on its own ([day, day + 1) in UTC, the clock the
 * server's days are counted in).
 */
function ByTypePerDay(props: { days: string[]; platform: string }) {
  const transport = useTransport();
  const days = props.days.slice(-TYPE_DAYS);
  const results = useQueries({
    queries: days.map((day) => {
      const from = Date.parse(`${day}T00:00:00Z`);
      const req = { platform: props.platform, from: timestampFromDate(new Date(from)), to: timestampFromDate(new Date(from + 86_400_000)) };
      return { ...createQueryOptions(WarmingService.method.getStatistics, req, { transport }), staleTime: 60_000 };
    }),
  });
  const ready = results.every((r) => r.data);
  const chart = useMemo(() => {
    if (!ready) return undefined;
    const types = [...new Set(results.flatMap((r) => r.data!.byActionType.map((t) => t.actionType)))].sort();
    const x = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    const ys = types.map((type) => results.map((r) => Number(r.data!.byActionType.find((t) => t.actionType === type)?.completed ?? 0)));
    return { data: [x, ...ys] as [number[], ...number[][]], series: types.map((t) => ({ label: t.replace("ACTION_TYPE_", "").toLowerCase() })) };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ready, ...results.map((r) => r.dataUpdatedAt)]);
  const failed = results.find((r) => r.isError);
  if (failed) return <ErrorBox error={failed.error} what="Cannot count actions by type per day" />;
  if (!chart) return <Loading what="actions by type per day" />;
  return (
    <>
      <Chart title={`Actions completed per day by type${props.days.length > TYPE_DAYS ? ` (last ${TYPE_DAYS} days)` : ""}`} data={chart.data} series={chart.series} yLabel="actions" />
      <p className="sr-only" data-testid="by-type-per-day">
        {chart.series.map((s, i) => `${s.label}: ${chart.data[i + 1].join(", ")}`).join("; ")}
      </p>
    </>
  );
}
