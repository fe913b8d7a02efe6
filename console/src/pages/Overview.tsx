import { useEffect, useRef, useState } from "react";
import { Link } from "wouter";
import { useQuery, useTransport, createQueryOptions } from "@connectrpc/connect-query";
import { useQueries } from "@tanstack/react-query";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountService, AccountStatus } from "../../../src/gen/conveer/v1/account_pb.js";
import { ProxyHealthFilter, ProxyService } from "../../../src/gen/conveer/v1/proxy_pb.js";
import { SMSService } from "../../../src/gen/conveer/v1/sms_pb.js";
import { MailService } from "../../../src/gen/conveer/v1/mail_pb.js";
import { MaxService } from "../../../src/gen/conveer/v1/max_pb.js";
import { TelegramService } from "../../../src/gen/conveer/v1/telegram_pb.js";
import { VKService } from "../../../src/gen/conveer/v1/vk_pb.js";
import { RegistrationState } from "../../../src/gen/conveer/v1/platform_pb.js";
import { WarmingService } from "../../../src/gen/conveer/v1/warming_pb.js";
import type { ActionRateMinute } from "../../../src/gen/conveer/v1/warming_pb.js";
import { PLATFORMS, enumValues } from "../api/format.ts";
import { useWarmingEvents } from "../api/events.ts";
import { ErrorBox, Loading, QueryView } from "../components/Feedback.tsx";

/** The system at a glance: accounts, the proxy pool, SMS balance, live warming, registrations. */
export function Overview() {
  return (
    <section>
      <h1>Overview</h1>
      <div className="cards">
        <AccountMatrix />
        <ProxyPool />
        <SmsBalance />
        <LiveWarming />
        <RegistrationFunnel />
      </div>
    </section>
  );
}

const STATUSES = enumValues(AccountStatus);

/** Accounts by platform × status: one counted page (page_size 1, total_count) per cell. */
function AccountMatrix() {
  const transport = useTransport();
  const cells = PLATFORMS.flatMap((platform) => STATUSES.map((s) => ({ platform, status: s.value as AccountStatus })));
  const results = useQueries({
    queries: cells.map((c) => ({ ...createQueryOptions(AccountService.method.listAccounts, { ...c, pageSize: 1 }, { transport }), staleTime: 10_000 })),
  });
  const failed = results.find((r) => r.isError);
  const count = (i: number) => results[i].data?.totalCount;
  return (
    <div className="card wide">
      <h2>Accounts by platform and status</h2>
      {failed ? <ErrorBox error={failed.error} what="Cannot count accounts" /> : null}
      <div className="table-wrap" tabIndex={0} role="region" aria-label="Scrollable table">
        <table className="grid matrix" aria-label="Accounts by platform and status">
          <thead>
            <tr>
              <th scope="col">Platform</th>
              {STATUSES.map((s) => (
                <th key={s.value} scope="col">
                  {s.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {PLATFORMS.map((p, pi) => (
              <tr key={p}>
                <th scope="row">{p}</th>
                {STATUSES.map((s, si) => {
                  const n = count(pi * STATUSES.length + si);
                  return (
                    <td key={s.value}>
                      {n === undefined ? "…" : n === 0n ? "0" : <Link href={`/accounts?platform=${p}&status=${s.name}`}>{n.toLocaleString()}</Link>}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** The proxy pool: healthy and unhealthy counts, slots used of capacity (over the first 1,000 proxies). */
function ProxyPool() {
  const all = useQuery(ProxyService.method.listProxies, { pageSize: 1000 });
  const unhealthy = useQuery(ProxyService.method.listProxies, { pageSize: 1, health: ProxyHealthFilter.UNHEALTHY });
  return (
    <div className="card">
      <h2>Proxy pool</h2>
      <QueryView query={all} what="proxies" isEmpty={(d) => d.totalCount === 0n} empty="No proxies yet.">
        {(d) => {
          const used = d.proxies.reduce((n, p) => n + p.allocated, 0);
          const capacity = d.proxies.reduce((n, p) => n + p.capacity, 0);
          const bad = unhealthy.data?.totalCount;
          return (
            <dl className="fields">
              <dt>Proxies</dt>
              <dd>{d.totalCount.toLocaleString()}</dd>
              <dt>Healthy</dt>
              <dd>{bad === undefined ? "…" : (d.totalCount - bad).toLocaleString()}</dd>
              <dt>Unhealthy</dt>
              <dd>{bad === undefined ? "…" : bad.toLocaleString()}</dd>
              <dt>Slots used</dt>
              <dd>
                {used} of {capacity}
                {d.nextPageToken ? " (first 1,000 proxies)" : ""}
              </dd>
            </dl>
          );
        }}
      </QueryView>
    </div>
  );
}

function SmsBalance() {
  const q = useQuery(SMSService.method.getBalance, {});
  return (
    <div className="card">
      <h2>SMS balance</h2>
      <QueryView query={q} what="the balance">
        {(b) => (
          <p className="big">
            {b.balance.toLocaleString(undefined, { maximumFractionDigits: 2 })} {b.currency} <small>({b.provider})</small>
          </p>
        )}
      </QueryView>
    </div>
  );
}

/** After StreamEvents reports an action, GetActionRate is asked again this much later (one call for a burst). */
const RATE_AFTER_EVENT_MS = 2_000;

/**
 * Warming actions per real-time minute over the last hour, as GetActionRate counts them in the
 * store (so what was recorded before this page opened is there too). Live: asked again every
 * 10 s, and 2 s after StreamEvents reports an action (at most once per 2 s); the server counts,
 * the page never adds events up itself, so nothing is counted twice.
 */
function LiveWarming() {
  const rate = useQuery(WarmingService.method.getActionRate, {}, { refetchInterval: 10_000 });
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const refetch = rate.refetch;
  useEffect(() => () => clearTimeout(timer.current), []);
  const stream = useWarmingEvents((e) => {
    if ((e.eventType !== "action_completed" && e.eventType !== "action_failed") || timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      void refetch();
    }, RATE_AFTER_EVENT_MS);
  });
  return (
    <div className="card">
      <h2>Warming actions per minute</h2>
      <p role="status" data-testid="stream-state">
        Stream: {stream.state}
        {stream.error ? ` (${stream.error})` : ""}
      </p>
      <QueryView query={rate} what="the action rate">
        {(d) => <RateBars minutes={d.minutes} />}
      </QueryView>
    </div>
  );
}

/** The last hour's minutes as bars (completed + failed), with this minute's and the hour's totals. */
function RateBars(props: { minutes: readonly ActionRateMinute[] }) {
  const ms = props.minutes.map((m) => ({ at: m.start ? timestampDate(m.start) : new Date(0), done: Number(m.completed), failed: Number(m.failed) }));
  const max = Math.max(1, ...ms.map((m) => m.done + m.failed));
  const now = ms.at(-1);
  const hour = ms.reduce((n, m) => n + m.done + m.failed, 0);
  const failed = ms.reduce((n, m) => n + m.failed, 0);
  return (
    <>
      <p className="big" data-testid="actions-per-minute">
        {now ? now.done + now.failed : 0} <small>this minute</small>
      </p>
      <div className="bars" aria-hidden="true">
        {ms.map((m) => (
          <span key={m.at.getTime()} style={{ height: `${(100 * (m.done + m.failed)) / max}%` }} title={`${m.at.toISOString().slice(11, 16)} UTC: ${m.done} done, ${m.failed} failed`} />
        ))}
      </div>
      <small data-testid="actions-last-hour" data-total={hour}>
        {hour.toLocaleString()} in the last hour ({failed.toLocaleString()} failed), per real-time minute
      </small>
    </>
  );
}

const REGISTRATION_SERVICES = { vk: VKService, telegram: TelegramService, mail: MailService, max: MaxService } as const;

/** Registrations of the last 24 h per platform: succeeded, failed by step (first 1,000 failures), running. */
function RegistrationFunnel() {
  const transport = useTransport();
  const [since] = useState(() => timestampFromDate(new Date(Date.now() - 24 * 3600_000)));
  const results = useQueries({
    queries: PLATFORMS.map((p) => ({
      ...createQueryOptions(REGISTRATION_SERVICES[p].method.listRegistrations, { createdAfter: since, pageSize: 1000 }, { transport }),
      staleTime: 10_000,
    })),
  });
  if (results.some((r) => r.isPending)) return <div className="card"><h2>Registrations, last 24 h</h2><Loading what="registrations" /></div>;
  const rows = results.flatMap((r, i) => (r.data ? [{ platform: PLATFORMS[i], regs: r.data.registrations, total: r.data.totalCount }] : []));
  const failed = results.find((r) => r.isError);
  return (
    <div className="card">
      <h2>Registrations, last 24 h</h2>
      {failed ? <ErrorBox error={failed.error} what="Cannot list registrations" /> : null}
      <ul className="funnel">
        {rows.map(({ platform, regs, total }) => {
          const ok = regs.filter((r) => r.state === RegistrationState.SUCCEEDED).length;
          const running = regs.filter((r) => r.state === RegistrationState.RUNNING).length;
          const steps = new Map<string, number>();
          for (const r of regs) if (r.state === RegistrationState.FAILED) steps.set(r.failedStep, (steps.get(r.failedStep) ?? 0) + 1);
          return (
            <li key={platform}>
              <strong>{platform}</strong>: {total.toLocaleString()} started, {ok} succeeded, {running} running
              {[...steps].map(([step, n]) => `, ${n} failed at ${step}`).join("")}
            </li>
          );
        })}
      </ul>
    </div>
  );
}
