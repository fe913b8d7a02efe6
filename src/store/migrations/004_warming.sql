-- Warming: tasks (one scenario running against one account), their planned actions, and events.
-- Times named *_at hold scenario time (the injectable clock, CONVEER_TIME_SCALE), except
-- lease_until, created_at and updated_at, which are real time (the database clock): a lease
-- guards against a dead process, and processes die in real time.

-- status is conveer.WarmingStatus (1 PENDING, 2 RUNNING, 3 PAUSED, 4 COMPLETED, 5 FAILED, 6 STOPPED).
-- next_seq: the planned action to record next (= total_actions once every action is recorded).
-- run_at: when a worker may claim action next_seq; NULL while it is in flight and whenever the
-- task is not RUNNING. next_action_at: what the API shows (the next action's due or retry time).
-- account_released: false from the moment the task ends until the account has been moved back
-- from WARMING (a peer call, retried by the worker until it succeeds).
CREATE TABLE warming_tasks (
  id text PRIMARY KEY,
  account_id text NOT NULL,
  platform text NOT NULL,
  scenario_id text NOT NULL,
  duration_days int NOT NULL DEFAULT 0,
  status smallint NOT NULL,
  total_days int NOT NULL,
  total_actions int NOT NULL,
  day1_at timestamptz NOT NULL,
  next_seq int NOT NULL DEFAULT 0,
  run_at timestamptz,
  next_action_at timestamptz,
  actions_completed int NOT NULL DEFAULT 0,
  actions_failed int NOT NULL DEFAULT 0,
  consecutive_failures int NOT NULL DEFAULT 0,
  progress int NOT NULL DEFAULT 0,
  current_day int NOT NULL DEFAULT 0,
  error text NOT NULL DEFAULT '',
  account_released boolean NOT NULL DEFAULT true,
  started_at timestamptz NOT NULL,
  paused_at timestamptz,
  completed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- At most one unfinished task per account: StartWarming's ALREADY_EXISTS, race-free.
CREATE UNIQUE INDEX warming_tasks_one_open ON warming_tasks (account_id) WHERE status IN (1, 2, 3);
-- The workers' claim and next-wake queries.
CREATE INDEX warming_tasks_due ON warming_tasks (run_at) WHERE status = 2 AND run_at IS NOT NULL;
CREATE INDEX warming_tasks_account ON warming_tasks (account_id, started_at);
CREATE INDEX warming_tasks_unreleased ON warming_tasks (updated_at) WHERE NOT account_released;
CREATE INDEX warming_tasks_starting ON warming_tasks (updated_at) WHERE status = 1;

-- The plan, materialized at StartWarming: one row per planned action, recorded exactly once
-- (done or failed) under its idempotency key. status: pending (not run, or waiting for a retry),
-- running (claimed; lease_until bounds the claim), done, failed. attempts counts claims.
CREATE TABLE warming_actions (
  task_id text NOT NULL REFERENCES warming_tasks (id) ON DELETE CASCADE,
  seq int NOT NULL,
  day int NOT NULL,
  kind text NOT NULL,
  due_at timestamptz NOT NULL,
  key text NOT NULL UNIQUE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts int NOT NULL DEFAULT 0,
  lease_until timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  duration_ms int,
  error text NOT NULL DEFAULT '',
  PRIMARY KEY (task_id, seq)
);
CREATE INDEX warming_actions_leased ON warming_actions (lease_until) WHERE status = 'running';
CREATE INDEX warming_actions_finished ON warming_actions (finished_at) WHERE status IN ('done', 'failed');

-- Events, written in the transaction of the change they report, then NOTIFY warming_events '<id>'
-- (the highest id the transaction wrote). event_type: action_started, action_completed,
-- action_failed, status_changed. data: string values (WarmingEvent.data).
CREATE TABLE warming_events (
  id bigserial PRIMARY KEY,
  task_id text NOT NULL,
  event_type text NOT NULL,
  at timestamptz NOT NULL,
  data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX warming_events_task ON warming_events (task_id, id);
