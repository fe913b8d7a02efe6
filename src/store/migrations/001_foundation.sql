-- Data keys for the credential vault: each wrapped (encrypted) under the master key.
-- Exactly one is active; older ones stay until nothing sealed with them is left.
CREATE TABLE data_keys (
  id text PRIMARY KEY,
  wrapped text NOT NULL,
  active boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (active) WHERE active;

-- API tokens: only a SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  token_hash text NOT NULL UNIQUE,
  scopes text[] NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Accounts. Secrets (password, phone, additional) are one sealed JSON document under key_id.
CREATE TABLE accounts (
  id text PRIMARY KEY,
  platform text NOT NULL,
  login text NOT NULL,
  status smallint NOT NULL,
  status_reason text NOT NULL DEFAULT '',
  secrets text NOT NULL,
  key_id text NOT NULL,
  has_phone boolean NOT NULL DEFAULT false,
  labels jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (platform, login)
);
CREATE INDEX accounts_status_id ON accounts (status, id);
CREATE INDEX accounts_platform_status_id ON accounts (platform, status, id);
CREATE INDEX accounts_platform_id ON accounts (platform, id);
CREATE INDEX accounts_key_id ON accounts (key_id);

-- Totals per (platform, status), kept by trigger so ListAccounts' total stays O(1) at a million rows.
CREATE TABLE account_counts (
  platform text NOT NULL,
  status smallint NOT NULL,
  n bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (platform, status)
);

-- Statement-level triggers with transition tables: one aggregated upsert per statement, so a
-- bulk insert of a million rows costs one counter update, not a million.
CREATE FUNCTION account_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO account_counts (platform, status, n)
    SELECT platform, status, count(*) FROM new_rows GROUP BY platform, status
    ON CONFLICT (platform, status) DO UPDATE SET n = account_counts.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION account_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE account_counts c SET n = c.n - d.k
    FROM (SELECT platform, status, count(*) AS k FROM old_rows GROUP BY platform, status) d
    WHERE c.platform = d.platform AND c.status = d.status;
  RETURN NULL;
END $$;

CREATE FUNCTION account_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE account_counts c SET n = c.n - d.k
    FROM (SELECT platform, status, count(*) AS k FROM old_rows GROUP BY platform, status) d
    WHERE c.platform = d.platform AND c.status = d.status;
  INSERT INTO account_counts (platform, status, n)
    SELECT platform, status, count(*) FROM new_rows GROUP BY platform, status
    ON CONFLICT (platform, status) DO UPDATE SET n = account_counts.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE TRIGGER accounts_count_insert AFTER INSERT ON accounts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION account_counts_add();
CREATE TRIGGER accounts_count_delete AFTER DELETE ON accounts
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION account_counts_remove();
CREATE TRIGGER accounts_count_update AFTER UPDATE ON accounts
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION account_counts_move();

-- Every status change, with who made it and why.
CREATE TABLE account_status_history (
  id bigserial PRIMARY KEY,
  account_id text NOT NULL REFERENCES accounts (id),
  from_status smallint,
  to_status smallint NOT NULL,
  reason text NOT NULL DEFAULT '',
  author text NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_status_history_account ON account_status_history (account_id, id);

-- Every GetCredentials call.
CREATE TABLE credential_audit (
  id bigserial PRIMARY KEY,
  account_id text NOT NULL,
  token_name text NOT NULL,
  peer text NOT NULL DEFAULT '',
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credential_audit_at ON credential_audit (at);

-- The proxy pool. The password is sealed like account secrets.
CREATE TABLE proxies (
  id text PRIMARY KEY,
  protocol text NOT NULL,
  host text NOT NULL,
  port int NOT NULL,
  username text NOT NULL DEFAULT '',
  password_sealed text NOT NULL DEFAULT '',
  key_id text NOT NULL DEFAULT '',
  country text NOT NULL DEFAULT '',
  provider text NOT NULL DEFAULT '',
  tags text[] NOT NULL DEFAULT '{}',
  capacity int NOT NULL DEFAULT 1 CHECK (capacity >= 1),
  allocated int NOT NULL DEFAULT 0,
  healthy boolean NOT NULL DEFAULT true,
  consecutive_failures int NOT NULL DEFAULT 0,
  last_checked_at timestamptz,
  last_latency_ms int,
  last_error text NOT NULL DEFAULT '',
  next_check_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The database itself refuses to lend a proxy beyond its capacity.
  CHECK (allocated >= 0 AND allocated <= capacity),
  UNIQUE (protocol, host, port, username)
);
CREATE INDEX proxies_free ON proxies (allocated, id) WHERE healthy;
CREATE INDEX proxies_next_check ON proxies (next_check_at);

-- One allocation per account: the primary key makes allocation idempotent.
CREATE TABLE proxy_allocations (
  account_id text PRIMARY KEY,
  proxy_id text NOT NULL REFERENCES proxies (id),
  platform text NOT NULL DEFAULT '',
  allocated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX proxy_allocations_proxy ON proxy_allocations (proxy_id);
CREATE INDEX proxy_allocations_expires ON proxy_allocations (expires_at);
