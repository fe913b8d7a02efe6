import { useState } from "react";
import type { ReactNode } from "react";
import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery, useTransport } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { WarmingService, WarmingStatus } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../../../src/gen/conveer/v1/warming_pb.js";
import { describeError } from "../api/errors.ts";
import { ActionButton } from "../components/ActionButton.tsx";
import { ErrorBox } from "../components/Feedback.tsx";

/** Pause, resume or stop one task (only what its status allows). */
export function TaskActions(props: { task: WarmingTask }) {
  const client = useQueryClient();
  const done = { onSuccess: () => void client.invalidateQueries() };
  const pause = useMutation(WarmingService.method.pauseWarming, done);
  const resume = useMutation(WarmingService.method.resumeWarming, done);
  const stop = useMutation(WarmingService.method.stopWarming, done);
  const t = props.task;
  const open = t.status === WarmingStatus.RUNNING || t.status === WarmingStatus.PAUSED || t.status === WarmingStatus.PENDING;
  const error = pause.error ?? resume.error ?? stop.error;
  return (
    <div className="row-actions">
      {t.status === WarmingStatus.RUNNING ? (
        <ActionButton scope="warming:write" onClick={() => pause.mutate({ taskId: t.id })}>
          Pause
        </ActionButton>
      ) : null}
      {t.status === WarmingStatus.PAUSED ? (
        <ActionButton scope="warming:write" onClick={() => resume.mutate({ taskId: t.id })}>
          Resume
        </ActionButton>
      ) : null}
      {open ? (
        <ActionButton scope="warming:write" className="danger" onClick={() => stop.mutate({ taskId: t.id, reason: "stopped in the console" })}>
          Stop
        </ActionButton>
      ) : null}
      {error ? <ErrorBox error={error} /> : null}
    </div>
  );
}

type Filter = { status: WarmingStatus; platform: string; scenarioId: string };
type Op = "pause" | "resume" | "stop";
const OPS: Record<Op, { label: string; from: WarmingStatus[] }> = {
  pause: { label: "Pause", from: [WarmingStatus.RUNNING] },
  resume: { label: "Resume", from: [WarmingStatus.PAUSED] },
  stop: { label: "Stop", from: [WarmingStatus.RUNNING, WarmingStatus.PAUSED, WarmingStatus.PENDING] },
};

/** Pause, resume or stop every task of the filtered set (every page, not only the one shown). */
export function BulkActions(props: { filter: Filter; total: bigint }) {
  const transport = useTransport();
  const client = useQueryClient();
  const [report, setReport] = useState("");
  const [busy, setBusy] = useState(false);
  const run = async (op: Op) => {
    const warming = createClient(WarmingService, transport);
    setBusy(true);
    setReport(`${OPS[op].label}: listing…`);
    let ok = 0;
    const errors: string[] = [];
    try {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await warming.listWarmingTasks({ ...props.filter, pageSize: 1000, pageToken });
        ids.push(...page.tasks.filter((t) => OPS[op].from.includes(t.status)).map((t) => t.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      for (const taskId of ids) {
        try {
          if (op === "pause") await warming.pauseWarming({ taskId });
          else if (op === "resume") await warming.resumeWarming({ taskId });
          else await warming.stopWarming({ taskId, reason: "stopped in the console (filtered set)" });
          ok++;
        } catch (err) {
          errors.push(describeError(err).message);
        }
        setReport(`${OPS[op].label}: ${ok} of ${ids.length} done${errors.length ? `, ${errors.length} refused` : ""}`);
      }
      setReport(`${OPS[op].label}: ${ok} of ${ids.length} done${errors.length ? `, ${errors.length} refused (first: ${errors[0]})` : ""}`);
    } catch (err) {
      setReport(`${OPS[op].label} failed: ${describeError(err).message}`);
    } finally {
      setBusy(false);
      void client.invalidateQueries();
    }
  };
  return (
    <div className="row-actions bulk" aria-label="Every matching task">
      <span>Every matching task:</span>
      {(Object.keys(OPS) as Op[]).map((op) => (
        <ActionButton key={op} scope="warming:write" className={op === "stop" ? "danger" : undefined} disabled={busy || props.total === 0n} onClick={() => void run(op)}>
          {`${OPS[op].label} all`}
        </ActionButton>
      ))}
      {report ? (
        <small role="status" data-testid="bulk-report">
          {report}
        </small>
      ) : null}
    </div>
  );
}

/** Start warming for accounts given by id (one a line), with a scenario and optionally a number of days. */
export function StartWarming() {
  const [ids, setIds] = useState("");
  const lines = ids.split(/\s+/).filter(Boolean);
  return (
    <details className="card add">
      <summary>Start warming</summary>
      <StartWarmingFor accountIds={lines} label="Start warming">
        <label className="grow">
          Account ids, one a line
          <textarea rows={3} value={ids} onChange={(e) => setIds(e.target.value)} />
        </label>
      </StartWarmingFor>
    </details>
  );
}

/** The scenario and days for StartWarming of the given accounts, one call each, with each outcome (or the server's refusal). */
export function StartWarmingFor(props: { accountIds: string[]; label: string; children?: ReactNode }) {
  const transport = useTransport();
  const client = useQueryClient();
  const scenarios = useQuery(WarmingService.method.listScenarios, {});
  const [scenario, setScenario] = useState("");
  const [days, setDays] = useState("");
  const [report, setReport] = useState<string[]>([]);
  const lines = props.accountIds;
  const start = async () => {
    const warming = createClient(WarmingService, transport);
    const out: string[] = [];
    for (const accountId of lines) {
      try {
        const t = await warming.startWarming({ accountId, scenarioId: scenario, durationDays: Number(days) || 0 });
        out.push(`${accountId}: started task ${t.id}`);
      } catch (err) {
        out.push(`${accountId}: ${describeError(err).message}`);
      }
      setReport([...out]);
    }
    void client.invalidateQueries();
  };
  return (
    <>
      <form className="action-form" aria-label={props.label} onSubmit={(e) => (e.preventDefault(), void start())}>
        {props.children}
        <label>
          Scenario
          <select value={scenario} onChange={(e) => setScenario(e.target.value)}>
            <option value="">default</option>
            {scenarios.data?.scenarios.map((s) => (
              <option key={s.id} value={s.id}>
                {s.name || s.id} ({s.totalDays} days)
              </option>
            ))}
          </select>
        </label>
        <label>
          Days (optional)
          <input type="number" min={1} value={days} onChange={(e) => setDays(e.target.value)} />
        </label>
        <ActionButton scope="warming:write" type="submit" disabled={lines.length === 0}>
          Start {lines.length || ""}
        </ActionButton>
      </form>
      {scenarios.isError ? <ErrorBox error={scenarios.error} what="Cannot list scenarios" /> : null}
      {report.length ? (
        <ul role="status" className="line-errors">
          {report.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      ) : null}
    </>
  );
}
