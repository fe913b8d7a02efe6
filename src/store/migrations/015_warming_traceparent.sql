-- The W3C traceparent of the call that started a warming task ('' when it was not traced): each of
-- the task's actions is a trace of its own, linked to this span.
ALTER TABLE warming_tasks ADD COLUMN traceparent text NOT NULL DEFAULT '';
