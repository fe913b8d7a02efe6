import { create } from "@bufbuild/protobuf";
import { AccountSchema, AccountStatus, UpdateStatusResponseSchema } from "../gen/conveer/v1/account_pb.js";
import type { Account } from "../gen/conveer/v1/account_pb.js";
import { ExecuteActionResponseSchema } from "../gen/conveer/v1/platform_pb.js";
import type { ExecuteActionRequest, ExecuteActionResponse } from "../gen/conveer/v1/platform_pb.js";
import { assertTransition, statusName } from "../accounts/account-status.ts";
import { AppError, notFound } from "../errors.ts";
import type { WarmingPeers } from "./peers.ts";

/**
 * Neighbour mocks for warming's tests and benchmark: a platform service that records every
 * ExecuteAction call and answers as told, and an in-memory AccountService (status rules of the
 * real one). Real platform integration lives with the platform services.
 */

/** One ExecuteAction call the fake platform saw. */
export type FakeCall = { platform: string; accountId: string; actionType: number; key: string; taskId: string; seq: number };

/** What the fake platform does with a call: answer (or throw); may be async. */
export type Behaviour = (call: FakeCall, n: number) => Partial<Pick<ExecuteActionResponse, "success" | "error">> | void | Promise<Partial<Pick<ExecuteActionResponse, "success" | "error">> | void>;

const OK = create(ExecuteActionResponseSchema, { success: true, result: { actionType: "", durationMs: 0n } });

/** A fake platform service for every platform. `record: false` keeps no call log (benchmarks). */
export function fakePlatform(opts: { record?: boolean } = {}) {
  const record = opts.record ?? true;
  const calls: FakeCall[] = [];
  let behaviour: Behaviour | undefined;
  let n = 0;
  const peer: WarmingPeers["platforms"] = (platform) => ({
    async executeAction(req: Partial<ExecuteActionRequest>, callOpts?: { signal?: AbortSignal }): Promise<ExecuteActionResponse> {
      n++;
      if (!record && !behaviour) return OK;
      const params = req.params ?? {};
      const call: FakeCall = { platform, accountId: req.accountId ?? "", actionType: req.actionType ?? 0, key: params.idempotency_key ?? "", taskId: params.warming_task_id ?? "", seq: Number(params.warming_seq) };
      if (record) calls.push(call);
      if (callOpts?.signal?.aborted) throw new AppError("CANCELLED", "cancelled");
      const out = behaviour ? await behaviour(call, n) : undefined;
      return out ? create(ExecuteActionResponseSchema, { success: out.success ?? true, error: out.error ?? "" }) : OK;
    },
  });
  return {
    peer,
    calls,
    /** Sets what every call does from now on (undefined: succeed at once). */
    behave(fn: Behaviour | undefined): void {
      behaviour = fn;
    },
    /** How many calls were made. */
    count: () => n,
  };
}

/** An in-memory AccountService: accounts by id, the real status transition rules. */
export function fakeAccounts() {
  const accounts = new Map<string, { platform: string; status: AccountStatus }>();
  const peer: WarmingPeers["accounts"] = {
    async getAccount(req): Promise<Account> {
      const a = accounts.get(req.accountId ?? "");
      if (!a) throw notFound("account", req.accountId ?? "");
      return create(AccountSchema, { id: req.accountId, platform: a.platform, status: a.status });
    },
    async updateStatus(req) {
      const a = accounts.get(req.accountId ?? "");
      if (!a) throw notFound("account", req.accountId ?? "");
      const to = req.status ?? AccountStatus.UNSPECIFIED;
      const previous = a.status;
      if (previous !== to) assertTransition(previous, to);
      a.status = to;
      return create(UpdateStatusResponseSchema, { success: true, previousStatus: statusName(previous) });
    },
  };
  return {
    peer,
    accounts,
    add(id: string, platform = "vk", status: AccountStatus = AccountStatus.ACTIVE): void {
      accounts.set(id, { platform, status });
    },
    status: (id: string) => accounts.get(id)?.status,
  };
}
