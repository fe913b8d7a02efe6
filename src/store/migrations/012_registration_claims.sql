-- Registrations are fenced by a claim number: the process that inserted a registration holds
-- claim 1; a replica that takes over a registration whose lease lapsed (to clean it up) bumps it.
-- Every later write names the claim it holds, so a process that was cut off past its lease and
-- comes back cannot move or finish a registration another replica has taken over.
ALTER TABLE registrations ADD COLUMN claim int NOT NULL DEFAULT 1;
