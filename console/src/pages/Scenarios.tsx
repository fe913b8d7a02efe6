import { useMemo } from "react";
import { Link } from "wouter";
import { useQuery } from "@connectrpc/connect-query";
import { WarmingService } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingScenario } from "../../../src/gen/conveer/v1/warming_pb.js";
import { Chart } from "../components/Chart.tsx";
import { QueryView } from "../components/Feedback.tsx";

/** The scenarios the server knows; a scenario's day plan as a chart. */
export function Scenarios(props: { id?: string }) {
  const q = useQuery(WarmingService.method.listScenarios, {});
  return (
    <section>
      <h1>Scenarios</h1>
      <QueryView query={q} what="scenarios" isEmpty={(d) => d.scenarios.length === 0}>
        {(d) => (
          <div className="cards">
            {d.scenarios.map((s) =>
              s.id === props.id ? (
                <ScenarioPlan key={s.id} scenario={s} />
              ) : (
                <div className="card" key={s.id}>
                  <h2>
                    <Link href={`/scenarios/${s.id}`}>{s.name || s.id}</Link> {s.isDefault ? <span className="badge">default</span> : null}
                  </h2>
                  <p>{s.description}</p>
                  <small>
                    {s.totalDays} days · {s.source}
                  </small>
                </div>
              ),
            )}
          </div>
        )}
      </QueryView>
    </section>
  );
}

/** Planned actions per day and kind ("2-5" counts as its midpoint), one line per kind. */
function ScenarioPlan(props: { scenario: WarmingScenario }) {
  const s = props.scenario;
  const { data, series } = useMemo(() => {
    const kinds = [...new Set(s.days.flatMap((d) => Object.keys(d.actions)))].sort();
    const days = Array.from({ length: s.totalDays }, (_, i) => i + 1);
    const count = (text: string) => {
      const [a, b] = text.split("-").map(Number);
      return b === undefined ? a : (a + b) / 2;
    };
    const cols = kinds.map((k) => days.map((day) => s.days.filter((d) => day >= d.fromDay && day <= d.toDay).reduce((n, d) => n + (d.actions[k] ? count(d.actions[k]) : 0), 0)));
    return { data: [days, ...cols] as [number[], ...number[][]], series: kinds.map((k) => ({ label: k })) };
  }, [s]);
  return (
    <div className="card wide">
      <h2>
        {s.name || s.id} {s.isDefault ? <span className="badge">default</span> : null}
      </h2>
      <p>
        {s.description} ({s.totalDays} days, {s.source}) <Link href="/scenarios">all scenarios</Link>
      </p>
      <Chart title={`${s.id}: planned actions per day`} data={data} series={series} xTime={false} yLabel="actions" bars={false} />
      <ul>
        {s.days.map((d) => (
          <li key={d.days}>
            days {d.days}, {d.startHour}–{d.endHour} h UTC:{" "}
            {Object.entries(d.actions)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")}
          </li>
        ))}
      </ul>
    </div>
  );
}
