-- Warming events are kept for CONVEER_WARMING_EVENTS_RETENTION_DAYS (real days; `at` is scenario
-- time, so retention needs the real time an event was written). Rows written before this
-- migration get the time it ran. The upkeep deletes from the low end of the id order, so no
-- extra index is needed.
ALTER TABLE warming_events ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
