import { fileURLToPath } from "node:url";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { protoPath as healthProtoPath } from "grpc-health-check";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

const protoRoot = fileURLToPath(new URL("../../proto/", import.meta.url));
// grpc.health.v1, as the health package that serves it ships it (…/health/v1/health.proto).
const healthRoot = healthProtoPath.slice(0, -"health/v1/health.proto".length);
// grpc.reflection.v1 and v1alpha, as @grpc/reflection ships them, so reflection lists itself too.
const reflectionRoot = join(dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")), "build", "proto");

/** The services every gRPC port serves besides its own: health and reflection (both versions). */
export const STANDARD_SERVICES = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] as const;

/** The descriptors reflection answers from: the project's .proto files, grpc.health.v1 and grpc.reflection. Load once, share between ports. */
export function loadReflectionDescriptors(): protoLoader.PackageDefinition {
  const dir = `${protoRoot}conveer/v1/`;
  const files = readdirSync(dir).filter((f) => f.endsWith(".proto")).map((f) => `conveer/v1/${f}`);
  const standard = ["health/v1/health.proto", "grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"];
  return protoLoader.loadSync([...files, ...standard], { includeDirs: [protoRoot, healthRoot, reflectionRoot], keepCase: true });
}

/**
 * gRPC server reflection (v1 and v1alpha) for one port, so grpcurl and Postman need no .proto
 * files: ListServices names only `services` (what the port serves) plus health and reflection;
 * every descriptor stays resolvable by symbol, as the request and response types are shared.
 */
export function createReflection(services: readonly string[], pkg: protoLoader.PackageDefinition = loadReflectionDescriptors()): ReflectionService {
  return new ReflectionService(pkg, { services: [...services, ...STANDARD_SERVICES] });
}
