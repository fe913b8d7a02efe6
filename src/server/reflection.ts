import { fileURLToPath } from "node:url";
import { readdirSync } from "node:fs";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

const protoRoot = fileURLToPath(new URL("../../proto/", import.meta.url));

/** gRPC server reflection (v1 and v1alpha) over the project's .proto files, so grpcurl and Postman need none. */
export function createReflection(): ReflectionService {
  const dir = `${protoRoot}conveer/v1/`;
  const files = readdirSync(dir).filter((f) => f.endsWith(".proto")).map((f) => `conveer/v1/${f}`);
  const pkg = protoLoader.loadSync(files, { includeDirs: [protoRoot], keepCase: true });
  return new ReflectionService(pkg);
}
