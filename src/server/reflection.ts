import { fileURLToPath } from "node:url";
import { readdirSync } from "node:fs";
import { protoPath as healthProtoPath } from "grpc-health-check";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

const protoRoot = fileURLToPath(new URL("../../proto/", import.meta.url));
// grpc.health.v1, as the health package that serves it ships it (…/health/v1/health.proto).
const healthRoot = healthProtoPath.slice(0, -"health/v1/health.proto".length);

/** gRPC server reflection (v1 and v1alpha) over the project's .proto files and grpc.health.v1, so grpcurl and Postman need none. */
export function createReflection(): ReflectionService {
  const dir = `${protoRoot}conveer/v1/`;
  const files = readdirSync(dir).filter((f) => f.endsWith(".proto")).map((f) => `conveer/v1/${f}`);
  const pkg = protoLoader.loadSync([...files, "health/v1/health.proto"], { includeDirs: [protoRoot, healthRoot], keepCase: true });
  return new ReflectionService(pkg);
}
