-- Auth modes are configuration, never a side effect of data: once any token has been created,
-- the store remembers it for good, so revoking or deleting every token cannot reopen a server
-- that runs in the automatic mode (CONVEER_AUTH unset). One row, kept by a trigger on api_tokens,
-- so a token made by the CLI or by another replica counts as soon as it commits.
CREATE TABLE auth_state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  first_token_at timestamptz
);
INSERT INTO auth_state (singleton, first_token_at) SELECT true, min(created_at) FROM api_tokens;

CREATE FUNCTION auth_state_token_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE auth_state SET first_token_at = now() WHERE first_token_at IS NULL;
  RETURN NULL;
END;
$$;
CREATE TRIGGER api_tokens_first AFTER INSERT ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION auth_state_token_created();

-- Every read of a secret is audited in one table: account credentials (GetCredentials) and,
-- from now on, proxy passwords (AllocateProxy, GetProxyForAccount, ForceRotate).
ALTER TABLE credential_audit ADD COLUMN secret text NOT NULL DEFAULT 'account';
ALTER TABLE credential_audit ADD COLUMN proxy_id text NOT NULL DEFAULT '';
