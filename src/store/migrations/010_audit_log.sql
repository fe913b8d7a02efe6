-- The audit log covers every write, not only secret reads: credential_audit becomes audit_log,
-- one row per audited event, written in the same transaction as the event. `action` is a stable
-- dotted name (credentials.read, proxy_password.read, account.create, account.import,
-- account.status, account.credentials_update, account.delete, token.create, token.revoke,
-- keys.rotate); `actor` is the token name ("open-mode" for anonymous calls, a system name such
-- as "warming" for the system's own work); `target` names what else it concerned (a proxy id, a
-- token name, a data key id); `detail` says how ("ACTIVE -> BANNED: reason", the scopes granted).
ALTER TABLE credential_audit RENAME TO audit_log;
ALTER TABLE audit_log RENAME COLUMN token_name TO actor;
ALTER TABLE audit_log ALTER COLUMN account_id SET DEFAULT '';
ALTER TABLE audit_log ADD COLUMN target text NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN detail text NOT NULL DEFAULT '';

-- The older rows in the new names: a credentials read, a proxy password read (its proxy as the
-- target), a delete (its reason as the detail).
UPDATE audit_log SET
  action = CASE
    WHEN action = 'delete' THEN 'account.delete'
    WHEN secret = 'proxy' THEN 'proxy_password.read'
    ELSE 'credentials.read'
  END,
  target = proxy_id,
  detail = reason;
ALTER TABLE audit_log DROP COLUMN secret;
ALTER TABLE audit_log DROP COLUMN proxy_id;
ALTER TABLE audit_log DROP COLUMN reason;
ALTER TABLE audit_log ALTER COLUMN action DROP DEFAULT;
ALTER INDEX credential_audit_at RENAME TO audit_log_at;
ALTER SEQUENCE credential_audit_id_seq RENAME TO audit_log_id_seq;
ALTER INDEX credential_audit_pkey RENAME TO audit_log_pkey;

-- ListAuditEntries: newest first (keyset on id DESC), by actor, by action (exact, or a prefix
-- such as 'account.' with LIKE, hence text_pattern_ops), by account; a time window walks the
-- (at) index or filters the rows another index gives.
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action text_pattern_ops, id);
CREATE INDEX audit_log_account ON audit_log (account_id, id) WHERE account_id <> '';

-- Key rotations run by the server (AdminService.StartKeyRotation) or the CLI: one row each, its
-- progress written as it goes, so any replica answers GetKeyRotation. The process running one
-- refreshes heartbeat_at; a RUNNING row whose heartbeat is older than the lease (its process
-- died) is marked FAILED by the next GetKeyRotation or StartKeyRotation, and a new rotation then
-- re-encrypts whatever is still under an older key. At most one RUNNING at a time.
CREATE TABLE key_rotations (
  id text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
  key_id text NOT NULL,
  total bigint NOT NULL DEFAULT 0,
  done bigint NOT NULL DEFAULT 0,
  batch_size int NOT NULL,
  started_by text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  error text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX key_rotations_one_running ON key_rotations ((true)) WHERE state = 'RUNNING';
