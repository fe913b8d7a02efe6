-- Several hosts on one database (issue 13).

-- Registrations are fenced by a claim number: the process that inserted a registration holds
-- claim 1; a replica that takes over a registration whose lease lapsed (to clean it up) bumps it.
-- Every later write names the claim it holds, so a process that was cut off past its lease and
-- comes back cannot move or finish a registration another replica has taken over.
ALTER TABLE registrations ADD COLUMN claim int NOT NULL DEFAULT 1;

-- account_counts on a status change: one upsert of the net change per (platform, status), in key
-- order. The old function lowered the old status's row, then raised the new one's, so
-- ACTIVE→WARMING on one account and WARMING→ACTIVE on another, at once, took the two rows in
-- opposite orders and deadlocked (seen with warming tasks starting and ending on several hosts);
-- and an UPDATE that changed no status (credentials, labels) locked both rows for nothing.
CREATE OR REPLACE FUNCTION account_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO account_counts (platform, status, n)
    SELECT platform, status, sum(k) FROM (
      SELECT platform, status, -count(*) AS k FROM old_rows GROUP BY platform, status
      UNION ALL
      SELECT platform, status, count(*) AS k FROM new_rows GROUP BY platform, status
    ) d
    GROUP BY platform, status
    HAVING sum(k) <> 0
    ORDER BY platform, status
    ON CONFLICT (platform, status) DO UPDATE SET n = account_counts.n + EXCLUDED.n;
  RETURN NULL;
END $$;
