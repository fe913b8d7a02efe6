import { useState } from "react";
import { Link } from "wouter";
import { createClient } from "@connectrpc/connect";
import { useQuery, useTransport } from "@connectrpc/connect-query";
import { keepPreviousData, useQueryClient } from "@tanstack/react-query";
import { createColumnHelper } from "@tanstack/react-table";
import { MailService } from "../../../src/gen/conveer/v1/mail_pb.js";
import { MaxService } from "../../../src/gen/conveer/v1/max_pb.js";
import { TelegramService } from "../../../src/gen/conveer/v1/telegram_pb.js";
import { VKService } from "../../../src/gen/conveer/v1/vk_pb.js";
import { RegistrationState } from "../../../src/gen/conveer/v1/platform_pb.js";
import type { Registration } from "../../../src/gen/conveer/v1/platform_pb.js";
import { PLATFORMS, enumValues, when } from "../api/format.ts";
import { describeError } from "../api/errors.ts";
import { ActionButton } from "../components/ActionButton.tsx";
import { DataTable } from "../components/DataTable.tsx";
import type { Features } from "../components/DataTable.tsx";
import { ErrorBox, Empty, Loading, QueryView } from "../components/Feedback.tsx";
import { SelectFilter, TextFilter, enumFromName } from "../components/Filters.tsx";
import { Pager } from "../components/Pager.tsx";
import { useUrlState } from "../components/url-state.ts";

/** The platform services: each has Register, GetRegistration and ListRegistrations. */
export const PLATFORM_SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;
type Platform = keyof typeof PLATFORM_SERVICES;
const platformOf = (p: string): Platform => (p in PLATFORM_SERVICES ? (p as Platform) : "vk");

const col = createColumnHelper<Features, Registration>();
const columns = col.columns([
  col.accessor("id", { header: "Registration", cell: (c) => <Link href={`/registrations/${c.row.original.platform}/${c.getValue()}`}>{c.getValue().slice(-8)}</Link> }),
  col.accessor("login", { header: "Login" }),
  col.accessor("state", { header: "State", cell: (c) => <span className={`badge reg-${RegistrationState[c.getValue()].toLowerCase()}`}>{RegistrationState[c.getValue()]}</span> }),
  col.accessor("step", { header: "Step reached" }),
  col.accessor("failedStep", { header: "Failed step", cell: (c) => c.getValue() || "—" }),
  col.accessor("error", { header: "Reason", cell: (c) => c.getValue() || "—" }),
  col.accessor("createdAt", { header: "Started", cell: (c) => when(c.getValue()) }),
]);
const STATES = enumValues(RegistrationState).map((s) => s.name);

/** Registrations of one platform (newest first): step reached, failed step and reason; start a batch and watch it. */
export function Registrations() {
  const url = useUrlState();
  const platform = platformOf(url.get("platform"));
  const q = useQuery(
    PLATFORM_SERVICES[platform].method.listRegistrations,
    { state: enumFromName<RegistrationState>(RegistrationState, url.get("state")), batchId: url.get("batch"), pageSize: 50, pageToken: url.pageToken },
    { placeholderData: keepPreviousData, refetchInterval: 3_000 },
  );
  return (
    <section>
      <h1>Registrations</h1>
      <StartBatch show={(p, batch) => (url.set("platform", p), url.set("batch", batch))} />
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Platform
          <select value={platform} onChange={(e) => url.set("platform", e.target.value)}>
            {PLATFORMS.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        <SelectFilter label="State" value={url.get("state")} options={STATES} set={(v) => url.set("state", v)} />
        <TextFilter label="Batch" name="batch" value={url.get("batch")} set={(v) => url.set("batch", v)} />
      </form>
      {q.isError ? <ErrorBox error={q.error} what="Cannot list registrations" /> : null}
      {q.isPending ? <Loading what="registrations" /> : null}
      {q.data ? (
        <>
          <p className="count">{q.data.totalCount.toLocaleString()} registrations match</p>
          {q.data.registrations.length === 0 ? <Empty>No registrations match.</Empty> : <DataTable label="Registrations" columns={columns} rows={q.data.registrations} rowKey={(r) => r.id} />}
          <Pager url={url} nextPageToken={q.data.nextPageToken} label="Pages of registrations" />
        </>
      ) : null}
    </section>
  );
}

/** A batch id like the CLI's `register` makes: the platform, the UTC time and a random tail (vk-20261201T0512-3fa9). */
function newBatchId(platform: Platform): string {
  const t = new Date().toISOString().replace(/[-:]/g, "").slice(0, 13);
  const tail = Array.from(crypto.getRandomValues(new Uint8Array(2)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${platform}-${t}-${tail}`;
}

/**
 * Start a batch: `count` Register calls, at most `concurrency` at a time, all with one batch id,
 * with their outcome as they end; `show` lists the batch's registrations.
 */
function StartBatch(props: { show(platform: Platform, batch: string): void }) {
  const transport = useTransport();
  const client = useQueryClient();
  const [platform, setPlatform] = useState<Platform>("vk");
  const [count, setCount] = useState("5");
  const [concurrency, setConcurrency] = useState("2");
  const [run, setRun] = useState<{ platform: Platform; batch: string; total: number; ok: number; failed: number; errors: string[] } | undefined>();
  const start = async () => {
    const svc = createClient(PLATFORM_SERVICES[platform], transport);
    const total = Math.max(1, Number(count) || 1);
    const batchId = newBatchId(platform);
    const state = { platform, batch: batchId, total, ok: 0, failed: 0, errors: [] as string[] };
    setRun({ ...state });
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        try {
          const r = await svc.register({ batchId });
          if (r.success) state.ok++;
          else (state.failed++, state.errors.push(`${r.failedStep}: ${r.error}`));
        } catch (err) {
          state.failed++;
          state.errors.push(describeError(err).message);
        }
        setRun({ ...state, errors: [...state.errors] });
        void client.invalidateQueries();
      }
    };
    await Promise.all(Array.from({ length: Math.min(total, Math.max(1, Number(concurrency) || 1)) }, worker));
  };
  const running = run !== undefined && run.ok + run.failed < run.total;
  return (
    <details className="card add">
      <summary>Start a batch</summary>
      <form className="action-form" aria-label="Start a batch" onSubmit={(e) => (e.preventDefault(), void start())}>
        <label>
          Platform
          <select value={platform} onChange={(e) => setPlatform(platformOf(e.target.value))}>
            {PLATFORMS.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        <label>
          Count
          <input type="number" min={1} max={1000} value={count} onChange={(e) => setCount(e.target.value)} />
        </label>
        <label>
          Concurrency
          <input type="number" min={1} max={50} value={concurrency} onChange={(e) => setConcurrency(e.target.value)} />
        </label>
        <ActionButton scope="platforms:write" type="submit" disabled={running}>
          Register
        </ActionButton>
      </form>
      {run ? (
        <div role="status" data-testid="batch">
          <progress max={run.total} value={run.ok + run.failed} aria-label="Batch progress" /> {run.ok + run.failed} of {run.total} ended: {run.ok} succeeded, {run.failed} failed
          {" "}(batch <code>{run.batch}</code>{" "}
          <button type="button" className="link" onClick={() => props.show(run.platform, run.batch)}>
            show its registrations
          </button>
          )
          {run.errors.length ? (
            <ul className="line-errors">
              {run.errors.slice(0, 10).map((e, i) => (
                <li key={i}>{e}</li>
              ))}
            </ul>
          ) : null}
        </div>
      ) : null}
    </details>
  );
}

/** One registration: its steps, what it held, how it ended. */
export function RegistrationDetail(props: { platform: string; id: string }) {
  const platform = platformOf(props.platform);
  const q = useQuery(PLATFORM_SERVICES[platform].method.getRegistration, { registrationId: props.id }, { refetchInterval: (query) => (query.state.data?.state === RegistrationState.RUNNING ? 2_000 : false) });
  return (
    <section>
      <p>
        <Link href={`/registrations?platform=${platform}`}>← Registrations</Link>
      </p>
      <QueryView query={q} what="the registration">
        {(r) => (
          <>
            <h1>
              Registration {r.login} <span className="badge">{RegistrationState[r.state]}</span>
            </h1>
            <div className="card">
              <dl className="fields">
                <dt>Id</dt>
                <dd><code>{r.id}</code></dd>
                <dt>Platform</dt>
                <dd>{r.platform}</dd>
                <dt>Step reached</dt>
                <dd>{r.step}</dd>
                <dt>Failed step</dt>
                <dd>{r.failedStep || "—"}</dd>
                <dt>Reason</dt>
                <dd>{r.error || "—"}</dd>
                <dt>Account</dt>
                <dd>{r.accountId ? <Link href={`/accounts/${r.accountId}`}>{r.accountId}</Link> : "—"}</dd>
                <dt>Proxy</dt>
                <dd>{r.proxyId || "—"}</dd>
                <dt>SMS activation</dt>
                <dd>{r.activationId || "—"}</dd>
                <dt>Started</dt>
                <dd>{when(r.createdAt)}</dd>
                <dt>Last step change</dt>
                <dd>{when(r.updatedAt)}</dd>
                <dt>Finished</dt>
                <dd>{when(r.finishedAt)}</dd>
              </dl>
            </div>
          </>
        )}
      </QueryView>
    </section>
  );
}
