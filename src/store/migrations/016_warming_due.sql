-- Warming's queue moves to a narrow table of its own (issue 12): one row per task with an action
-- to run, claimable (lease_until NULL, run_at <= now) or in flight (leased). A claim leases the
-- queue row and writes nothing else; recording the outcome moves the queue row on (or deletes it),
-- and writes the action, the task and the events. Before, every action rewrote the wide task row
-- and the action row at its claim and again at its recording.
--
-- seq: the planned action the row is for (the task's next_seq). attempts: the claims of that
-- action so far; with seq it is the lease token: an outcome is recorded only while the row still
-- holds the claim's (seq, attempts) with a lease, so a worker whose lease lapsed and was taken
-- over cannot record twice. lease_until is real time (the database clock), as before.
--
-- Needs every host stopped (docs/operations.md): warming_tasks.run_at is dropped, and older hosts
-- claim by it; beside new hosts they would run actions the new hosts also run.
CREATE TABLE warming_due (
  task_id text PRIMARY KEY REFERENCES warming_tasks (id) ON DELETE CASCADE,
  seq int NOT NULL,
  run_at timestamptz NOT NULL,
  attempts int NOT NULL DEFAULT 0,
  lease_until timestamptz
);
CREATE INDEX warming_due_ready ON warming_due (run_at) WHERE lease_until IS NULL;

-- What was claimable, and what was in flight (leased as it was: the upkeep takes it over when the
-- lease lapses, as it would have before).
INSERT INTO warming_due (task_id, seq, run_at)
  SELECT id, next_seq, run_at FROM warming_tasks WHERE status = 2 AND run_at IS NOT NULL;
INSERT INTO warming_due (task_id, seq, run_at, attempts, lease_until)
  SELECT a.task_id, a.seq, a.due_at, a.attempts, coalesce(a.lease_until, now())
  FROM warming_actions a JOIN warming_tasks t ON t.id = a.task_id AND t.next_seq = a.seq
  WHERE a.status = 'running'
  ON CONFLICT (task_id) DO NOTHING;
UPDATE warming_actions SET status = 'pending', lease_until = NULL WHERE status = 'running';

ALTER TABLE warming_tasks DROP COLUMN run_at;
-- Room on each page for the recording's update of a task to stay on its page (a HOT update: no
-- index entries), now that it changes no indexed column. Half: a batch may update every task on a
-- page at once (tasks started together fall due together); at 85 most of those updates found no
-- room and wrote three index entries each.
ALTER TABLE warming_tasks SET (fillfactor = 50);
