import { createServer } from "node:http";
import { connect } from "node:net";
import type { AddressInfo, Socket } from "node:net";

/** A running local proxy: its URL (http://127.0.0.1:PORT) and close(). */
export type LocalProxy = { url: string; close(): Promise<void> };

/**
 * A plain HTTP CONNECT proxy on loopback, for the demo's proxy pool: it tunnels to whatever
 * host:port a CONNECT asks for and answers nothing else. Never for production: it has no
 * authentication and listens only on 127.0.0.1.
 */
export async function startLocalProxy(): Promise<LocalProxy> {
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => {
    res.writeHead(405, { "content-type": "text/plain" });
    res.end("only CONNECT\n");
  });
  server.on("connect", (req, client: Socket, head: Buffer) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? "");
    if (!m) return void client.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    const upstream = connect(Number(m[2]), m[1], () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    }
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
