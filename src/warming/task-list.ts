import type { WarmingTask } from "../gen/conveer/v1/warming_pb.js";
import { WarmingStatus } from "../gen/conveer/v1/warming_pb.js";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { invalidArgument, quote } from "../errors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../page-token.ts";
import { checkId } from "../store/ids.ts";
import { toTask } from "./messages.ts";
import { readTask } from "./tasks.ts";
import * as store from "./task-list-store.ts";
import type { WarmingContext } from "./warming-context.ts";

/** Reading tasks: GetWarmingStatus (with the account's login) and ListWarmingTasks. */

/** ListWarmingTasks' request, as the domain takes it. */
export type ListTasksRequest = { status: WarmingStatus; platform: string; accountId: string; scenarioId: string; pageSize: number; pageToken: string };

/** GetWarmingStatus: the task with its platform and account login; NOT_FOUND when there is none. */
export async function getTask(ctx: WarmingContext, taskId: string): Promise<WarmingTask> {
  const t = await readTask(ctx, taskId);
  return toTask(t, ctx.clock.now(), await store.accountLogin(ctx.db, t.account_id));
}

/** ListWarmingTasks: a keyset page of tasks, newest first, and the total for the filter. */
export async function listTasks(ctx: WarmingContext, req: ListTasksRequest): Promise<{ tasks: WarmingTask[]; next: string; total: number }> {
  if (!(req.status in WarmingStatus)) throw invalidArgument("status", `is not a known WarmingStatus (${req.status})`);
  if (req.platform && !isPlatform(req.platform)) throw invalidArgument("platform", `must be empty or one of ${PLATFORMS.join(", ")}, got ${quote(req.platform)}`);
  if (req.accountId) checkId(req.accountId, "account_id");
  if (req.scenarioId.length > 200) throw invalidArgument("scenario_id", `must be at most 200 characters, got ${req.scenarioId.length}`);
  const limit = pageSize(req.pageSize);
  const filter: store.TaskFilter = { status: req.status, platform: req.platform, accountId: req.accountId, scenarioId: req.scenarioId };
  const before = decodePageToken(req.pageToken, filter);
  const [rows, total] = await Promise.all([store.listTasks(ctx.db, filter, before, limit + 1), store.countTasks(ctx.db, filter)]);
  const page = rows.slice(0, limit);
  const next = rows.length > limit ? encodePageToken(page[page.length - 1].id, filter) : "";
  const now = ctx.clock.now();
  return { tasks: page.map((t) => toTask(t, now, t.account_login)), next, total };
}
