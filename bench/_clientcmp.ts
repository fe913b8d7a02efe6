import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { AccountService, AccountSchema, GetAccountRequestSchema } from "../src/gen/conveer/v1/account_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { startBareServer } from "./bare-server.ts";
import { closedLoop } from "./diag.ts";

const srv = await startBareServer();
const addr = `127.0.0.1:${srv.port}`;
const which = process.argv[2];
if (which === "connect") {
  const c = remoteClient(AccountService, { addr });
  console.log("connect", await closedLoop(() => c.getAccount({ accountId: "6650a1b2c3d4e5f6a7b8c9d0" }), 64, 1000, 3000));
} else {
  const client = new grpc.Client(addr, grpc.credentials.createInsecure());
  const call = () => new Promise((res, rej) => client.makeUnaryRequest("/conveer.AccountService/GetAccount", (m: any) => Buffer.from(toBinary(GetAccountRequestSchema, m)), (b: Buffer) => fromBinary(AccountSchema, b), create(GetAccountRequestSchema, { accountId: "6650a1b2c3d4e5f6a7b8c9d0" }), (e: any, v: any) => (e ? rej(e) : res(v))));
  console.log("grpc-js", await closedLoop(call, 64, 1000, 3000));
  client.close();
}
const cpu = process.cpuUsage(); console.log("cpu ms", (cpu.user + cpu.system) / 1000);
await srv.stop();
process.exit(0);
