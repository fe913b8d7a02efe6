import { readdirSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";

/**
 * Every service descriptor generated into src/gen that a gRPC port serves, found by scanning, so a
 * new service is covered by the tests that sweep them all. AdminService is left out: it has no gRPC
 * port (the HTTP port serves it through the same interceptor chain, request check included).
 */
export async function grpcPortServices(): Promise<DescService[]> {
  const dir = new URL("../../src/gen/conveer/v1/", import.meta.url);
  const out: DescService[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith("_pb.js"))) {
    const mod = (await import(new URL(f, dir).href)) as Record<string, unknown>;
    for (const v of Object.values(mod)) if ((v as { kind?: string })?.kind === "service" && (v as DescService).typeName !== "conveer.AdminService") out.push(v as DescService);
  }
  return out;
}
