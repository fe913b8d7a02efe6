-- Listings, newest first (keyset on id DESC: ids are time-ordered), filtered.
-- ListWarmingTasks: by status, by platform, by account (the primary key serves the unfiltered
-- listing and the scenario filter, which is rare; its count scans the table).
CREATE INDEX warming_tasks_list_status ON warming_tasks (status, id);
CREATE INDEX warming_tasks_list_platform ON warming_tasks (platform, id);
CREATE INDEX warming_tasks_list_account ON warming_tasks (account_id, id);
-- ListRegistrations (per platform service): by platform, optionally by status, newest first; a
-- created_at range is a filter on the rows the index walks (fine for operator listings; a
-- created_at index would pay off only if ranges over millions of rows became common).
CREATE INDEX registrations_list ON registrations (platform, status, id);
CREATE INDEX registrations_list_all ON registrations (platform, id);
