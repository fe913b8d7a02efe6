-- Warming's recording, cheaper per action (issue 12). Safe beside older hosts: they read and write
-- the same tables and columns; what changes is which indexes there are and how a trigger counts.
--
-- 1. Recording an action's outcome rewrites its row (status, times, duration). Two partial indexes
-- kept that update from staying on its page (a HOT update: no index entries): one on status =
-- 'running', which nothing writes since 016 (the lease moved to warming_due), and one on
-- finished_at for GetStatistics' time range, which now reads the recorded actions as it does
-- without a range. Without them the recording changes no indexed column; room on each page
-- (fillfactor, for pages written from now on) lets the new version stay there.
DROP INDEX warming_actions_leased;
DROP INDEX warming_actions_finished;
ALTER TABLE warming_actions SET (fillfactor = 70);

-- 2. warming_task_counts (011) was kept by a row trigger: a batch that ended 128 tasks upserted the
-- same two counts rows 256 times in one transaction, each upsert walking the chain of versions the
-- ones before it left (quadratic; 17 ms of a 40 ms recording). Now once per statement, from its
-- transition tables: each row updated counts −1 for its old status and +1 for its new one, so a
-- row whose status stayed adds nothing, and a statement that moved no status writes nothing.
CREATE FUNCTION warming_task_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warming_task_counts AS c (status, n)
    SELECT status, sum(n) FROM (SELECT status, -1 AS n FROM old_rows UNION ALL SELECT status, 1 FROM new_rows) d
    GROUP BY status HAVING sum(n) <> 0 ORDER BY status
    ON CONFLICT (status) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER warming_tasks_count_update AFTER UPDATE ON warming_tasks
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION warming_task_counts_moved();
