/**
 * A diagnostic target (BENCH_DIAG=1): Conveer's real gRPC transport (grpcServiceOf: auth, context,
 * metrics, logging, recovery) and the real AccountService binding, over an accounts domain whose
 * get() answers from memory (a fixed row through the real toAccount) instead of the store. Its
 * distance to the bare server is the transport's cost; its distance to a store row is the store's.
 */
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { accountService } from "../src/accounts/account-service.ts";
import { toAccount } from "../src/accounts/accounts.ts";
import { checkId } from "../src/store/ids.ts";
import type { Accounts } from "../src/accounts/accounts.ts";
import { createAuthenticator } from "../src/auth/tokens.ts";
import { GRPC_SERVER_OPTIONS, grpcServiceOf } from "../src/server/grpc-server.ts";
import { createMetrics } from "../src/server/metrics.ts";
import { serveOnLoopback } from "./loopback.ts";
import type { Db } from "../src/store/db.ts";

export type StubServer = { port: number; stop(): Promise<void> };

export async function startStubServer(): Promise<StubServer> {
  const now = new Date();
  const row = {
    id: "6650a1b2c3d4e5f6a7b8c9d0",
    platform: "vk",
    login: "bench-user-12345",
    status: 2,
    status_reason: "created",
    secrets: "",
    key_id: "",
    has_phone: true,
    labels: { source: "bench" },
    created_at: now,
    updated_at: now,
  };
  const accounts = {
    async get(id: string) {
      checkId(id, "account_id");
      return toAccount({ ...row, id });
    },
  } as unknown as Accounts;
  // No token was ever made (the flag query answers false): the open (loopback) mode, as in the benchmarked system.
  const noDb = { kind: "postgres", query: async () => ({ rows: [{ ever: false }], rowCount: 1 }) } as unknown as Db;
  const shutdown = new AbortController();
  const deps = { log: pino({ level: "silent" }), auth: createAuthenticator({ db: noDb, mode: "auto" }), metrics: createMetrics(), shutdown: shutdown.signal };
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const { definition, handlers } = grpcServiceOf(accountService(accounts), deps);
  server.addService(definition, handlers);
  return serveOnLoopback(server, () => shutdown.abort());
}
