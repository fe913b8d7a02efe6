/**
 * The peer in bench/warming.ts: graphile-worker 0.18 draining a backlog of no-op jobs in batches
 * (a local queue that fetches and locks `batch` jobs per query, completions batched), on the same
 * PostgreSQL database as the warming run beside it (its own schema, graphile_worker).
 *
 * And the same drain with the bookkeeping a warming action does, built the way one would build it
 * on graphile-worker: one job per planned action (its payload names the task and the action), and
 * each job's task records the outcome in ONE statement (one implicit transaction) through
 * helpers.withPgClient: the action row (done, times, a result jsonb), the task row in place (done
 * count + 1, progress, next seq, next due, updated_at) and two event rows (action_started and
 * action_completed, jsonb data), in tables shaped like warming's (schema gw_bench, BOOKKEEPING_DDL).
 * The job's completion is graphile-worker's own, batched, in a later transaction: a weaker
 * guarantee than warming's, whose outcome, events and queue row move in one transaction (a crash
 * between the two runs the job again and records the action twice).
 */
import { makeWorkerUtils, run } from "graphile-worker";
import type { AddJobsJobSpec, LogFunctionFactory } from "graphile-worker";
import { Logger } from "graphile-worker";
import pg from "pg";

/** graphile-worker's settings for the drain: its documented batching knobs. */
export type DrainOptions = { url: string; concurrency: number; batch: number };

const quiet: LogFunctionFactory = () => (level, message) => {
  if (level === "error") process.stderr.write(`[graphile-worker] ${message}\n`);
};

/** Installs graphile-worker's schema and queues `total` no-op jobs, all due now. */
export async function seedGraphileJobs(url: string, total: number): Promise<void> {
  const utils = await makeWorkerUtils({ connectionString: url, logger: new Logger(quiet) });
  try {
    await utils.migrate();
    const runAt = new Date(Date.now() - 1000);
    for (let done = 0; done < total; ) {
      const n = Math.min(5000, total - done);
      const specs: AddJobsJobSpec[] = Array.from({ length: n }, (_, i) => ({ identifier: "noop", payload: { i: done + i }, runAt }));
      await utils.addJobs(specs);
      done += n;
    }
  } finally {
    await utils.release();
  }
}

/**
 * The bookkeeping run's tables, shaped like warming's (migrations 004, 005, 015, 016, 018, 020):
 * text ids, the same columns, the same primary keys, unique key, events(task_id, id) btree and
 * created_at BRIN, the same fillfactors (room for in-place updates), plus a result jsonb on the
 * action. Left out: warming_tasks' indexes on updated_at (warming's account-release outbox and
 * stale-start upkeep; this task moves updated_at every action, and would lose its in-place update
 * to them), the task-counts trigger, the queue table (graphile-worker's jobs are the queue) and the
 * NOTIFY: each leaves the graphile-worker side cheaper, not dearer.
 */
const BOOKKEEPING_DDL = `
CREATE SCHEMA IF NOT EXISTS gw_bench;
CREATE TABLE IF NOT EXISTS gw_bench.warming_tasks (
  id text PRIMARY KEY, account_id text NOT NULL, platform text NOT NULL, scenario_id text NOT NULL,
  duration_days int NOT NULL DEFAULT 0, status smallint NOT NULL, total_days int NOT NULL, total_actions int NOT NULL,
  day1_at timestamptz NOT NULL, next_seq int NOT NULL DEFAULT 0, next_action_at timestamptz,
  actions_completed int NOT NULL DEFAULT 0, actions_failed int NOT NULL DEFAULT 0, consecutive_failures int NOT NULL DEFAULT 0,
  progress int NOT NULL DEFAULT 0, current_day int NOT NULL DEFAULT 0, error text NOT NULL DEFAULT '',
  account_released boolean NOT NULL DEFAULT true, started_at timestamptz NOT NULL, paused_at timestamptz, completed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), traceparent text NOT NULL DEFAULT ''
) WITH (fillfactor = 50);
CREATE UNIQUE INDEX IF NOT EXISTS warming_tasks_one_open ON gw_bench.warming_tasks (account_id) WHERE status IN (1, 2, 3);
CREATE INDEX IF NOT EXISTS warming_tasks_account ON gw_bench.warming_tasks (account_id, started_at);
CREATE TABLE IF NOT EXISTS gw_bench.warming_actions (
  task_id text NOT NULL REFERENCES gw_bench.warming_tasks (id) ON DELETE CASCADE, seq int NOT NULL, day int NOT NULL,
  kind text NOT NULL, due_at timestamptz NOT NULL, key text NOT NULL UNIQUE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts int NOT NULL DEFAULT 0, lease_until timestamptz, started_at timestamptz, finished_at timestamptz,
  duration_ms int, error text NOT NULL DEFAULT '', result jsonb,
  PRIMARY KEY (task_id, seq)
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS gw_bench.warming_events (
  id bigserial PRIMARY KEY, task_id text NOT NULL, event_type text NOT NULL, at timestamptz NOT NULL,
  data jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS warming_events_task ON gw_bench.warming_events (task_id, id);
CREATE INDEX IF NOT EXISTS warming_events_created_brin ON gw_bench.warming_events USING brin (created_at);
`;

/**
 * One action's outcome, in one statement: $1 task, $2 seq, $3 attempt, $4 when it started, $5 the
 * result. The task's next due is the following planned action's due time (none after the last).
 */
const BOOKKEEPING_SQL = `
WITH a AS (
  UPDATE gw_bench.warming_actions
  SET status = 'done', attempts = $3, started_at = $4::timestamptz, finished_at = now(),
    duration_ms = greatest(0, round(extract(epoch FROM now() - $4::timestamptz) * 1000))::int, result = $5::jsonb
  WHERE task_id = $1 AND seq = $2
  RETURNING task_id, seq, day, kind, due_at, duration_ms
), t AS (
  UPDATE gw_bench.warming_tasks t
  SET actions_completed = t.actions_completed + 1, next_seq = a.seq + 1,
    progress = (t.actions_completed + t.actions_failed + 1) * 100 / t.total_actions,
    next_action_at = (SELECT n.due_at FROM gw_bench.warming_actions n WHERE n.task_id = a.task_id AND n.seq = a.seq + 1),
    updated_at = now()
  FROM a WHERE t.id = a.task_id
  RETURNING t.id, t.progress, t.actions_completed, t.actions_failed, t.total_actions
)
INSERT INTO gw_bench.warming_events (task_id, event_type, at, data)
SELECT a.task_id, e.event_type, e.at, e.info || e.extra
FROM a JOIN t ON t.id = a.task_id,
  LATERAL (SELECT jsonb_build_object('action_type', 'ACTION_TYPE_' || upper(a.kind), 'seq', a.seq::text, 'day', a.day::text, 'attempt', $3::text) AS info) i,
  LATERAL (VALUES
    (1, 'action_started', $4::timestamptz, i.info, jsonb_build_object('due_at', to_char(a.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'lag_ms', round(extract(epoch FROM ($4::timestamptz - a.due_at)) * 1000)::bigint::text, 'progress', ((t.actions_completed + t.actions_failed - 1) * 100 / t.total_actions)::text)),
    (2, 'action_completed', now(), i.info, jsonb_build_object('duration_ms', a.duration_ms::text, 'progress', t.progress::text,
      'actions_completed', t.actions_completed::text, 'actions_failed', t.actions_failed::text))
  ) AS e(ord, event_type, at, info, extra)
ORDER BY e.ord`;

/**
 * Makes the bookkeeping tables (first time), copies the tasks and planned actions of warming's
 * scenario `scenarioId` (the same ids, plans and due times; RUNNING, nothing recorded, whether or
 * not warming has run them yet) into them, and queues one
 * graphile-worker job per action, due now, in the order the actions fall due. Answers the jobs.
 */
export async function seedBookkeepingJobs(url: string, scenarioId: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let jobs: { task: string; seq: number }[];
  try {
    await c.query(BOOKKEEPING_DDL);
    await c.query(
      `INSERT INTO gw_bench.warming_tasks (id, account_id, platform, scenario_id, status, total_days, total_actions, day1_at, next_action_at, started_at, current_day)
       SELECT t.id, t.account_id, t.platform, t.scenario_id, 2, t.total_days, t.total_actions, t.day1_at, a.due_at, t.started_at, 1
       FROM public.warming_tasks t JOIN public.warming_actions a ON a.task_id = t.id AND a.seq = 0 WHERE t.scenario_id = $1`,
      [scenarioId],
    );
    const r = await c.query<{ task: string; seq: number }>(
      `WITH x AS (
         INSERT INTO gw_bench.warming_actions (task_id, seq, day, kind, due_at, key)
         SELECT a.task_id, a.seq, a.day, a.kind, a.due_at, a.key FROM public.warming_actions a JOIN public.warming_tasks t ON t.id = a.task_id WHERE t.scenario_id = $1
         RETURNING task_id, seq, due_at
       ) SELECT task_id AS task, seq FROM x ORDER BY due_at, task_id`,
      [scenarioId],
    );
    jobs = r.rows;
    await c.query("ANALYZE gw_bench.warming_tasks; ANALYZE gw_bench.warming_actions; ANALYZE gw_bench.warming_events");
  } finally {
    await c.end();
  }
  const utils = await makeWorkerUtils({ connectionString: url, logger: new Logger(quiet) });
  try {
    await utils.migrate();
    const runAt = new Date(Date.now() - 1000);
    for (let done = 0; done < jobs.length; done += 5000) {
      await utils.addJobs(jobs.slice(done, done + 5000).map((payload) => ({ identifier: "bookkeeping", payload, runAt })));
    }
  } finally {
    await utils.release();
  }
  return jobs.length;
}

/** What a bookkeeping job's action answered (the platform call this bench leaves out). */
const RESULT = JSON.stringify({ success: true, action_type: "", duration_ms: 0 });

/**
 * Runs graphile-worker until `total` jobs have run, with a no-op task (or, `work: "bookkeeping"`,
 * the jobs of seedBookkeepingJobs, each recording its action); `onJob` counts each (the bench
 * samples the count). Answers when the last job ran and the runner stopped.
 */
export async function drainGraphileJobs(o: DrainOptions, total: number, onJob: () => void, work: "noop" | "bookkeeping" = "noop"): Promise<void> {
  let n = 0;
  let finished!: () => void;
  const done = new Promise<void>((res) => (finished = res));
  const runner = await run({
    connectionString: o.url,
    concurrency: o.concurrency,
    noHandleSignals: true,
    pollInterval: 200,
    logger: new Logger(quiet),
    taskList:
      work === "noop"
        ? {
            noop: async () => {
              onJob();
              if (++n === total) finished();
            },
          }
        : {
            bookkeeping: async (payload, helpers) => {
              const { task, seq } = payload as { task: string; seq: number };
              const startedAt = new Date();
              const r = await helpers.withPgClient((c) => c.query(BOOKKEEPING_SQL, [task, seq, helpers.job.attempts, startedAt, RESULT]));
              if (r.rowCount !== 2) throw new Error(`bookkeeping: task ${task} action ${seq}: ${r.rowCount} event rows written, not 2`);
              onJob();
              if (++n === total) finished();
            },
          },
    preset: { worker: { localQueue: { size: o.batch }, completeJobBatchDelay: 0, failJobBatchDelay: 0, maxPoolSize: 20 } },
  });
  await done;
  await runner.stop();
}
