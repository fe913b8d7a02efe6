-- SMS activations: one rented phone number waiting for (or holding) its code. Phone numbers of
-- rented activations are the provider's, not account secrets: stored plainly.
-- status is conveer.SMSStatus (1 PENDING, 2 WAITING_CODE, 3 CODE_RECEIVED, 4 COMPLETED, 5 CANCELLED, 6 FAILED).
-- released: the provider side is settled (cancel or finish acknowledged); the sweeper retries until it is.
CREATE TABLE sms_activations (
  id text PRIMARY KEY,
  provider text NOT NULL,
  provider_ref text NOT NULL,
  phone text NOT NULL,
  service text NOT NULL,
  country text NOT NULL,
  operator text NOT NULL DEFAULT '',
  price double precision NOT NULL,
  status smallint NOT NULL,
  code text NOT NULL DEFAULT '',
  refunded boolean NOT NULL DEFAULT false,
  released boolean NOT NULL DEFAULT false,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider, provider_ref)
);
-- The sweeper's scans: open activations by expiry, and settled ones whose provider side is not.
CREATE INDEX sms_activations_open_expires ON sms_activations (expires_at) WHERE status IN (1, 2, 3);
CREATE INDEX sms_activations_unreleased ON sms_activations (updated_at) WHERE NOT released AND status IN (4, 5, 6);

-- Every status change of an activation, with who made it and why.
CREATE TABLE sms_activation_history (
  id bigserial PRIMARY KEY,
  activation_id text NOT NULL REFERENCES sms_activations (id),
  from_status smallint,
  to_status smallint NOT NULL,
  reason text NOT NULL DEFAULT '',
  author text NOT NULL DEFAULT '',
  changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_activation_history_activation ON sms_activation_history (activation_id, id);
