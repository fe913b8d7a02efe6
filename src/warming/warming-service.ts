import { WarmingService } from "../gen/conveer/v1/warming_pb.js";
import type { HandlerContext } from "@connectrpc/connect";
import { bindService, peerKey, principalOf } from "../server/service-binding.ts";
import type { Warming } from "./warming.ts";

/** The caller's address, for the audit records of an operator's changes. */
const peerOf = (ctx: HandlerContext) => ctx.values.get(peerKey);

/** WarmingService over the warming domain: validate, call, map. StreamEvents ends when the call does (ctx.signal). */
export function warmingService(warming: Warming) {
  return bindService({
    service: WarmingService,
    scopes: {
      startWarming: "warming:write",
      pauseWarming: "warming:write",
      resumeWarming: "warming:write",
      stopWarming: "warming:write",
      getWarmingStatus: "warming:read",
      getStatistics: "warming:read",
      streamEvents: "warming:read",
      listScenarios: "warming:read",
      getScenario: "warming:read",
      listWarmingTasks: "warming:read",
      getActionRate: "warming:read",
    },
    impl: {
      startWarming: (req, ctx) => warming.startTask(req, principalOf(ctx).name, peerOf(ctx)),
      pauseWarming: (req, ctx) => warming.pauseTask(req.taskId, principalOf(ctx).name, peerOf(ctx)),
      resumeWarming: (req, ctx) => warming.resumeTask(req.taskId, principalOf(ctx).name, peerOf(ctx)),
      stopWarming: (req, ctx) => warming.stopTask(req.taskId, req.reason, principalOf(ctx).name, peerOf(ctx)),
      getWarmingStatus: (req) => warming.getTask(req.taskId),
      getStatistics: (req) => warming.statistics(req),
      streamEvents: (req, ctx) => warming.events(req, ctx.signal),
      listScenarios: () => ({ scenarios: warming.listScenarios() }),
      getScenario: (req) => warming.getScenario(req.scenarioId),
      getActionRate: () => warming.actionRate(),
      async listWarmingTasks(req) {
        const page = await warming.listTasks(req);
        return { tasks: page.tasks, nextPageToken: page.next, totalCount: BigInt(page.total) };
      },
    },
  });
}
