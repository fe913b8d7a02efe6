-- A registration's batch: the label Register was given (RegisterRequest.batch_id; `conveer register`
-- sets one per run), so ListRegistrations can show one batch. Additive: the column has a default,
-- and the old code's inserts leave it empty.
ALTER TABLE registrations ADD COLUMN batch_id text NOT NULL DEFAULT '';
CREATE INDEX registrations_batch ON registrations (platform, batch_id, id) WHERE batch_id <> '';
