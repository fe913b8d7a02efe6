/** A grpc-js server on a free loopback port, for the benchmarks' own servers. */
import * as grpc from "@grpc/grpc-js";

/** Binds `server` on 127.0.0.1 (any free port); stop() shuts it down gracefully (forced after 1 s), then runs onStop. */
export async function serveOnLoopback(server: grpc.Server, onStop?: () => void): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          onStop?.();
          resolve();
        };
        const t = setTimeout(() => {
          server.forceShutdown();
          done();
        }, 1000);
        server.tryShutdown(done);
      }),
  };
}
