import { useMemo, useState } from "react";
import { Link } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { skipToken } from "@tanstack/react-query";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { WarmingService, WarmingStatus } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingEvent, WarmingScenario } from "../../../src/gen/conveer/v1/warming_pb.js";
import { useWarmingEvents } from "../api/events.ts";
import { when } from "../api/format.ts";
import { Chart } from "../components/Chart.tsx";
import { QueryView } from "../components/Feedback.tsx";
import { TaskActions } from "./WarmingActions.tsx";

/** How many events the timeline keeps on screen (newest first). */
const SHOWN = 300;

/** One warming task: its state, actions, its event timeline (stored, then live) and its plan against what was done, per day. */
export function WarmingTask(props: { id: string }) {
  const task = useQuery(WarmingService.method.getWarmingStatus, { taskId: props.id });
  const scenario = useQuery(WarmingService.method.getScenario, task.data ? { scenarioId: task.data.scenarioId } : skipToken);
  const [events, setEvents] = useState<WarmingEvent[]>([]);
  const stream = useWarmingEvents(
    (e) => {
      setEvents((prev) => [e, ...prev]);
      // A finished action or a status change moved the task: read it again (in-flight reads are shared).
      if (e.eventType !== "action_started") void task.refetch();
    },
    props.id,
    true,
  );
  return (
    <section>
      <p>
        <Link href="/warming">← Warming</Link>
      </p>
      <QueryView query={task} what="the task">
        {(t) => (
          <>
            <h1>
              Warming task <code>{t.id.slice(-8)}</code> <span className={`badge warming-${WarmingStatus[t.status].toLowerCase()}`}>{WarmingStatus[t.status]}</span>
            </h1>
            <div className="cards">
              <div className="card">
                <dl className="fields">
                  <dt>Account</dt>
                  <dd>
                    <Link href={`/accounts/${t.accountId}`}>{t.accountLogin || t.accountId}</Link> ({t.platform})
                  </dd>
                  <dt>Scenario</dt>
                  <dd>
                    <Link href={`/scenarios/${t.scenarioId}`}>{t.scenarioId}</Link>
                  </dd>
                  <dt>Progress</dt>
                  <dd>
                    <progress max={100} value={t.progress} aria-label="Task progress" /> {t.progress} %
                  </dd>
                  <dt>Day</dt>
                  <dd>
                    {t.currentDay} of {t.totalDays}
                  </dd>
                  <dt>Done / failed</dt>
                  <dd>
                    {t.actionsCompleted} / {t.actionsFailed}
                  </dd>
                  <dt>Started</dt>
                  <dd>{when(t.startedAt)}</dd>
                  <dt>Next action</dt>
                  <dd>{when(t.nextActionAt)}</dd>
                  {t.error ? (
                    <>
                      <dt>Error</dt>
                      <dd>{t.error}</dd>
                    </>
                  ) : null}
                </dl>
                <TaskActions task={t} />
              </div>
              {scenario.data ? <PlanAgainstDone scenario={scenario.data} totalDays={t.totalDays} events={events} /> : null}
              <div className="card wide">
                <h2>Events</h2>
                <p className="count" role="status">
                  Stream: {stream.state}
                  {stream.error ? ` (${stream.error})` : ""} · {events.length} events
                </p>
                <ol className="timeline" aria-label="Task events">
                  {events.slice(0, SHOWN).map((e) => (
                    <li key={e.eventId}>
                      <time>{e.timestamp ? timestampDate(e.timestamp).toLocaleString() : ""}</time> <strong>{e.eventType}</strong>{" "}
                      {e.data.action_type ? `${e.data.action_type} (day ${e.data.day})` : ""}
                      {e.data.to ? `→ ${e.data.to.replace("WARMING_STATUS_", "")}` : ""}
                      {e.data.error ? <span className="reason">: {e.data.error}</span> : null}
                    </li>
                  ))}
                </ol>
              </div>
            </div>
          </>
        )}
      </QueryView>
    </section>
  );
}

/** Planned actions per day (a range "2-5" counts as its midpoint) beside the actions done that day, from the events. */
function PlanAgainstDone(props: { scenario: WarmingScenario; totalDays: number; events: WarmingEvent[] }) {
  const data = useMemo(() => {
    const days = Array.from({ length: Math.max(1, props.totalDays) }, (_, i) => i + 1);
    const count = (text: string) => {
      const [a, b] = text.split("-").map(Number);
      return b === undefined ? a : (a + b) / 2;
    };
    const planned = days.map((d) => props.scenario.days.filter((e) => d >= e.fromDay && d <= e.toDay).reduce((n, e) => n + Object.values(e.actions).reduce((m, v) => m + count(v), 0), 0));
    const done = days.map((d) => props.events.filter((e) => e.eventType === "action_completed" && Number(e.data.day) === d).length);
    return [days, planned, done] as [number[], number[], number[]];
  }, [props.scenario, props.totalDays, props.events]);
  return (
    <div className="card wide">
      <Chart title="Planned against done, per day" data={data} series={[{ label: "planned" }, { label: "done" }]} xTime={false} yLabel="actions" bars />
    </div>
  );
}
