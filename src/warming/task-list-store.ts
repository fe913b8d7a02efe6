import type { Queryable } from "../store/db.ts";
import { qualifiedTaskColumns } from "./warming-store.ts";
import type { TaskRow } from "./warming-store.ts";

/** ListWarmingTasks' SQL: a filtered keyset page, newest first, and the filter's total. */

/** The filter of a task listing; empty/0 fields match everything. */
export type TaskFilter = { status: number; platform: string; accountId: string; scenarioId: string };

/** A task row with its account's login ("" if the account row is gone). */
export type ListedTaskRow = TaskRow & { account_login: string };

function where(f: TaskFilter, params: unknown[]): string[] {
  const w: string[] = [];
  if (f.status) w.push(`t.status = $${params.push(f.status)}`);
  if (f.platform) w.push(`t.platform = $${params.push(f.platform)}`);
  if (f.accountId) w.push(`t.account_id = $${params.push(f.accountId)}`);
  if (f.scenarioId) w.push(`t.scenario_id = $${params.push(f.scenarioId)}`);
  return w;
}

const T_COLUMNS = qualifiedTaskColumns("t");

/** One page of tasks with ids below `beforeId` ("" for the first page), newest first (keyset on the primary key). */
export async function listTasks(q: Queryable, f: TaskFilter, beforeId: string, limit: number): Promise<ListedTaskRow[]> {
  const params: unknown[] = [];
  const w = where(f, params);
  if (beforeId) w.push(`t.id < $${params.push(beforeId)}`);
  const sql = `SELECT ${T_COLUMNS}, COALESCE(a.login, '') AS account_login FROM warming_tasks t LEFT JOIN accounts a ON a.id = t.account_id
    ${w.length ? "WHERE " + w.join(" AND ") : ""} ORDER BY t.id DESC LIMIT $${params.push(limit)}`;
  return (await q.query<ListedTaskRow>(sql, params)).rows;
}

/** How many tasks match a filter. */
export async function countTasks(q: Queryable, f: TaskFilter): Promise<number> {
  const params: unknown[] = [];
  const w = where(f, params);
  const r = await q.query<{ n: string | number }>(`SELECT count(*) AS n FROM warming_tasks t ${w.length ? "WHERE " + w.join(" AND ") : ""}`, params);
  return Number(r.rows[0]?.n ?? 0);
}

/** The login of one account ("" when there is none). */
export async function accountLogin(q: Queryable, accountId: string): Promise<string> {
  const r = await q.query<{ login: string }>("SELECT login FROM accounts WHERE id = $1", [accountId]);
  return r.rows[0]?.login ?? "";
}
