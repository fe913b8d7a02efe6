import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

/** TLS material, when configured; `clientCa` set: clients must present a certificate it signed (mTLS). */
export type Tls = { cert: Buffer; key: Buffer; clientCa?: Buffer } | undefined;

/** Reads CONVEER_TLS_CERT / CONVEER_TLS_KEY (and CONVEER_TLS_CLIENT_CA) files; undefined when not configured. */
export function loadTls(certPath: string, keyPath: string, clientCaPath = ""): Tls {
  if (!certPath) return undefined;
  const read = (path: string, env: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read ${env} ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read(certPath, "CONVEER_TLS_CERT"), key: read(keyPath, "CONVEER_TLS_KEY"), clientCa: clientCaPath ? read(clientCaPath, "CONVEER_TLS_CLIENT_CA") : undefined };
}

/**
 * Server credentials for grpc-js: TLS when configured, plaintext HTTP/2 otherwise (the seed's
 * clients). With a client CA the handshake fails for a client without a certificate it signed.
 */
export function serverCredentials(tls: Tls): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], Boolean(tls.clientCa));
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
