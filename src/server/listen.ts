import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

/** TLS material, when configured. */
export type Tls = { cert: Buffer; key: Buffer } | undefined;

/** Reads CONVEER_TLS_CERT / CONVEER_TLS_KEY files; undefined when not configured. */
export function loadTls(certPath: string, keyPath: string): Tls {
  if (!certPath) return undefined;
  return { cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

/** Server credentials for grpc-js: TLS when configured, plaintext HTTP/2 otherwise (the seed's clients). */
export function serverCredentials(tls: Tls): grpc.ServerCredentials {
  return tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
}

/** Binds a grpc-js server; resolves to the bound port, with an error naming the address when taken. */
export function bindGrpc(server: grpc.Server, addr: string, creds: grpc.ServerCredentials, envName: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, creds, (err, port) => {
      if (err) reject(new Error(`cannot listen on ${addr} (${envName}): ${err.message}`));
      else resolve(port);
    });
  });
}
