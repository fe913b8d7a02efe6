-- Registrations: the durable record of each run of the registration conveyor. `step` is the step
-- being run; a row left `running` by a process that died (its lease passed) is cleaned up by the
-- next start: number cancelled (refund), proxy released, account marked DELETED.
CREATE TABLE registrations (
  id text PRIMARY KEY,
  platform text NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
  step text NOT NULL,
  login text NOT NULL,
  account_id text NOT NULL DEFAULT '',
  proxy_id text NOT NULL DEFAULT '',
  activation_id text NOT NULL DEFAULT '',
  signup_id text NOT NULL DEFAULT '',
  failed_step text NOT NULL DEFAULT '',
  error text NOT NULL DEFAULT '',
  lease_until timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registrations_running ON registrations (lease_until) WHERE status = 'running';
