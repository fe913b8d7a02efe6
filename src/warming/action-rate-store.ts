import type { Queryable } from "../store/db.ts";

/** GetActionRate's SQL: action events per real-time minute, by created_at (the store's clock). */

/** One minute's counts; `minute` is its start in epoch ms. */
export type MinuteCountRow = { minute: number; completed: number; failed: number };

/**
 * The store's current minute (epoch ms) and the action_completed / action_failed counts of every
 * minute from `since` (or the hour's first minute, whichever is later) up to now; minutes with no
 * event have no row. The bound is an expression of now() and a parameter, both known when the
 * statement is planned, so the BRIN index on created_at (migration 018) is used on a big table.
 */
export async function actionsPerMinute(q: Queryable, since: Date | null, minutes: number): Promise<{ current: number; rows: MinuteCountRow[] }> {
  const r = await q.query<{ current: Date | string; minute: Date | string | null; completed: number | null; failed: number | null }>(
    `WITH c AS (
       SELECT date_trunc('minute', e.created_at) AS minute,
              count(*) FILTER (WHERE e.event_type = 'action_completed')::int AS completed,
              count(*) FILTER (WHERE e.event_type = 'action_failed')::int AS failed
       FROM warming_events e
       WHERE e.created_at >= GREATEST(date_trunc('minute', now()) - make_interval(mins => $2::int - 1), $1::timestamptz)
         AND e.event_type IN ('action_completed', 'action_failed')
       GROUP BY 1
     )
     SELECT date_trunc('minute', now()) AS current, c.minute, c.completed, c.failed FROM (SELECT 1) one LEFT JOIN c ON true`,
    [since, minutes],
  );
  const current = new Date(r.rows[0].current).getTime();
  const rows = r.rows.filter((x) => x.minute !== null).map((x) => ({ minute: new Date(x.minute!).getTime(), completed: Number(x.completed), failed: Number(x.failed) }));
  return { current, rows };
}
