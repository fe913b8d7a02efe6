/**
 * A TCP relay between Conveer and PostgreSQL that a test can break the way networks break:
 * refuse (nothing listens: connections are refused, open ones reset), blackhole (packets vanish:
 * connections stay open and silent, new ones are accepted and never answered), reset (every open
 * connection gets an RST), and pass (back to normal; held connections flow again).
 */
import net from "node:net";
import type { Socket } from "node:net";
import { freePort } from "./grpc.ts";

/** How the relay treats traffic now. */
export type RelayMode = "pass" | "blackhole" | "refuse";

/** A running relay. */
export type TcpRelay = {
  port: number;
  mode(): RelayMode;
  /** Changes the mode; resolves once the listening socket matches it. */
  set(mode: RelayMode): Promise<void>;
  /** Sends an RST on every open connection (both sides); new ones are relayed as before. */
  reset(): void;
  /** Open client connections. */
  connections(): number;
  close(): Promise<void>;
};

type Pair = { client: Socket; upstream?: Socket };

/** Starts a relay on a free port to host:port. */
export async function startTcpRelay(host: string, port: number): Promise<TcpRelay> {
  let mode: RelayMode = "pass";
  const pairs = new Set<Pair>();
  const listenPort = await freePort();

  const drop = (p: Pair) => {
    pairs.delete(p);
    p.client.destroy();
    p.upstream?.destroy();
  };
  const connect = (p: Pair) => {
    const up = net.connect(port, host);
    p.upstream = up;
    up.on("error", () => drop(p));
    up.on("close", () => drop(p));
    flow(p);
  };
  const flow = (p: Pair) => {
    p.client.pipe(p.upstream!);
    p.upstream!.pipe(p.client);
    p.client.resume();
    p.upstream!.resume();
  };
  const hold = (p: Pair) => {
    p.client.unpipe();
    p.upstream?.unpipe();
    p.client.pause();
    p.upstream?.pause();
  };
  const rst = (p: Pair) => {
    pairs.delete(p);
    for (const s of [p.client, p.upstream]) {
      try {
        s?.resetAndDestroy();
      } catch {
        s?.destroy(); // not connected yet: nothing to reset
      }
    }
  };

  const server = net.createServer((client) => {
    const p: Pair = { client };
    pairs.add(p);
    client.on("error", () => drop(p));
    client.on("close", () => drop(p));
    if (mode === "blackhole") client.pause();
    else connect(p);
  });
  const listen = () => new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenPort, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  await listen();

  return {
    port: listenPort,
    mode: () => mode,
    async set(next) {
      const was = mode;
      if (next === was) return;
      mode = next;
      if (next === "refuse") {
        // close() calls back once every open connection has ended: reset them after asking.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const p of [...pairs]) rst(p);
        await closed;
        return;
      }
      if (was === "refuse") await listen();
      if (next === "blackhole") for (const p of pairs) hold(p);
      else for (const p of pairs) (p.upstream ? flow(p) : connect(p));
    },
    reset() {
      for (const p of [...pairs]) rst(p);
    },
    connections: () => pairs.size,
    async close() {
      for (const p of [...pairs]) drop(p);
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
