/**
 * The bare baseline: a plain @grpc/grpc-js server on 127.0.0.1 serving only
 * `conveer.AccountService/GetAccount`, decoding the request and encoding a fixed Account with
 * protobuf-es on every call (the serialization Conveer uses), with the same server options, and
 * nothing else: no auth, no interceptors, no store.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountSchema, AccountStatus, GetAccountRequestSchema } from "../src/gen/conveer/v1/account_pb.js";
import { GRPC_SERVER_OPTIONS } from "../src/server/grpc-server.ts";
import { serveOnLoopback } from "./loopback.ts";

/** A started bare server. */
export type BareServer = { port: number; stop(): Promise<void> };

/** Starts the bare server on 127.0.0.1:0. */
export async function startBareServer(): Promise<BareServer> {
  const now = new Date();
  // Shaped like what Conveer answers for a seeded account, so the bytes on the wire match.
  const account = create(AccountSchema, {
    id: "6650a1b2c3d4e5f6a7b8c9d0",
    platform: "vk",
    login: "bench-user-12345",
    status: AccountStatus.ACTIVE,
    statusReason: "created",
    createdAt: timestampFromDate(now),
    updatedAt: timestampFromDate(now),
    hasPhone: true,
    labels: { source: "bench" },
  });
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  const definition: grpc.ServiceDefinition = {
    getAccount: {
      path: "/conveer.AccountService/GetAccount",
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
      originalName: "getAccount",
    },
  };
  server.addService(definition, {
    getAccount: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const req = fromBinary(GetAccountRequestSchema, call.request);
      if (!req.accountId) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: "account_id is required" });
        return;
      }
      callback(null, Buffer.from(toBinary(AccountSchema, account)));
    },
  });
  return serveOnLoopback(server);
}
