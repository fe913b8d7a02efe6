-- ListAccounts' new filters: a label selector (jsonb containment, `labels @> '{"k":"v"}'`) and a
-- login prefix (`login LIKE 'pre%'`, which needs text_pattern_ops unless the collation is C).
CREATE INDEX accounts_labels ON accounts USING gin (labels jsonb_path_ops);
CREATE INDEX accounts_login_prefix ON accounts (login text_pattern_ops, id);

-- ListProxies' tag filter (`tags @> ARRAY['t']`).
CREATE INDEX proxies_tags ON proxies USING gin (tags);

-- ListActivations: newest first by id, optionally by status or service.
CREATE INDEX sms_activations_status_id ON sms_activations (status, id);
CREATE INDEX sms_activations_service_id ON sms_activations (service, id);

-- DeleteAccount finds the activation of the account's registration.
CREATE INDEX registrations_account ON registrations (account_id) WHERE account_id <> '';

-- The audit log records writes too, not only secret reads: `action` is 'read' (GetCredentials,
-- proxy passwords) or 'delete' (DeleteAccount, with its reason).
ALTER TABLE credential_audit ADD COLUMN action text NOT NULL DEFAULT 'read';
ALTER TABLE credential_audit ADD COLUMN reason text NOT NULL DEFAULT '';
