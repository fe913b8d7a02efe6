/**
 * Real proxy servers on 127.0.0.1 (ephemeral ports) for tests: an HTTP CONNECT proxy (optionally over
 * TLS), a SOCKS5 proxy, a refusing port, a hanging proxy and an echo target. Hand-written on node:net;
 * every close() destroys all open sockets so tests never hang on a lingering connection.
 */
import net from "node:net";
import tls from "node:tls";

/**
 * A proxy (or stand-in) on 127.0.0.1; `connections` counts tunnels opened so far (for the hanging
 * proxy: accepted TCP connections); `requests` counts HTTP/1.x requests sent through its tunnels
 * (request lines seen going upstream; tunnels are kept alive and carry many).
 */
export type LocalProxy = { url: string; port: number; readonly connections: number; readonly requests: number; close(): Promise<void> };

/** Credentials a local proxy demands; omit both for an open proxy. */
export type LocalProxyAuth = { username?: string; password?: string; /** Address to listen on (default 127.0.0.1). */ host?: string };

/** A local TCP target; `close()` destroys all open connections. */
export type LocalTarget = { host: string; port: number; close(): Promise<void> };

/** Self-signed CA certificate (CN conveer-test-proxy; SAN 127.0.0.1, ::1, localhost; valid 2000–2100) of the TLS proxy: trust it as `ca`. TEST ONLY. */
export const localProxyTlsCert = `-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIBATAKBggqhkjOPQQDAjAdMRswGQYDVQQDDBJjb252ZWVy
LXRlc3QtcHJveHkwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMB0x
GzAZBgNVBAMMEmNvbnZlZXItdGVzdC1wcm94eTBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABCGEWYXJj58qt3WMXO1s0lWWEQfIDdbJbpZROMdypZYg6TU9+1uMrt2C
Gu5SxiP2jTe6Pmx2P4W7047f6cK/DnSjYDBeMA8GA1UdEwEB/wQFMAMBAf8wLAYD
VR0RBCUwI4cEfwAAAYcQAAAAAAAAAAAAAAAAAAAAAYIJbG9jYWxob3N0MB0GA1Ud
DgQWBBQXASp/fjCg7CWLSBVsFbx4baPXGDAKBggqhkjOPQQDAgNHADBEAiBL4x0z
OIduGtRueckXhR99FMmW6EQGMYz7kdNvYhc/PwIgBHvTKgNQ5IpZ1wDAtfoPidWU
ImnmC75VXIipZ9eobRE=
-----END CERTIFICATE-----
`;

// TEST ONLY: the throwaway key of localProxyTlsCert; it protects nothing.
const localProxyTlsKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJ8pF/1iyzMcatyJW
PgNlKs2cwYqvMoyNLw/RNBKqWsWhRANCAAQhhFmFyY+fKrd1jFztbNJVlhEHyA3W
yW6WUTjHcqWWIOk1PftbjK7dghruUsYj9o03uj5sdj+Fu9OO3+nCvw50
-----END PRIVATE KEY-----
`;

const HOST = "127.0.0.1";
const MAX_HEAD = 16 * 1024;

/** A real HTTP CONNECT proxy with optional Basic auth (407 when missing or wrong); `tls: true` serves it over TLS (url https://, trust localProxyTlsCert). */
export async function startHttpConnectProxy(opts?: LocalProxyAuth & { tls?: boolean }): Promise<LocalProxy> {
  const auth = authOf(opts);
  const sockets = new Set<net.Socket>();
  const stats = { tunnels: 0, requests: 0 };
  const onClient = (client: net.Socket) => {
    track(sockets, client);
    void handleHttpConnect(client, auth, sockets, stats).catch(() => client.destroy());
  };
  const server = opts?.tls
    ? tls.createServer({ key: localProxyTlsKey, cert: localProxyTlsCert }, onClient)
    : net.createServer(onClient);
  if (opts?.tls) {
    // Handshake failures (a client that does not trust the cert) must not crash the test process.
    server.on("tlsClientError", (_err: Error, socket: net.Socket) => socket.destroy());
    server.on("connection", (raw: net.Socket) => track(sockets, raw));
  }
  const host = opts?.host ?? HOST;
  const port = await listen(server, host);
  return proxyHandle(server, sockets, `${opts?.tls ? "https" : "http"}://${userinfo(auth)}${host}:${port}`, port, stats);
}

/** A real SOCKS5 proxy (RFC 1928 + RFC 1929 user/pass), CONNECT only; IPv4, domain name and IPv6 address types. */
export async function startSocks5Proxy(opts?: LocalProxyAuth): Promise<LocalProxy> {
  const auth = authOf(opts);
  const sockets = new Set<net.Socket>();
  const stats = { tunnels: 0, requests: 0 };
  const server = net.createServer((client) => {
    track(sockets, client);
    void handleSocks5(client, auth, sockets, stats).catch(() => client.destroy());
  });
  const host = opts?.host ?? HOST;
  const port = await listen(server, host);
  return proxyHandle(server, sockets, `socks5://${userinfo(auth)}${host}:${port}`, port, stats);
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed), so connecting is refused; url scheme defaults to http. */
export async function startRefusingProxy(opts?: { scheme?: "http" | "https" | "socks5" }): Promise<LocalProxy> {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { url: `${opts?.scheme ?? "http"}://${HOST}:${port}`, port, connections: 0, requests: 0, close: async () => {} };
}

/** Accepts TCP connections and never sends a byte (input is read and dropped); `connections` counts accepted connections. */
export async function startHangingProxy(opts?: { scheme?: "http" | "https" | "socks5" }): Promise<LocalProxy> {
  const sockets = new Set<net.Socket>();
  const stats = { tunnels: 0, requests: 0 };
  const server = net.createServer((socket) => {
    stats.tunnels++;
    track(sockets, socket);
    socket.resume();
  });
  const port = await listen(server);
  return proxyHandle(server, sockets, `${opts?.scheme ?? "http"}://${HOST}:${port}`, port, stats);
}

/** A TCP server on 127.0.0.1 that echoes every byte back. */
export async function startEchoTarget(): Promise<LocalTarget> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    track(sockets, socket);
    socket.pipe(socket);
  });
  const port = await listen(server);
  return { host: HOST, port, close: closer(server, sockets) };
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT

type Auth = { username: string; password: string } | undefined;

async function handleHttpConnect(client: net.Socket, auth: Auth, sockets: Set<net.Socket>, stats: TunnelStats): Promise<void> {
  const r = reader(client);
  const head = await r.until((buf) => {
    const end = buf.indexOf("\r\n\r\n");
    if (end >= 0) return end + 4;
    return buf.length > MAX_HEAD ? -2 : -1;
  });
  if (head === TOO_LONG) return respond(client, "431 Request Header Fields Too Large");
  if (head === null) return void client.destroy();
  const [requestLine, ...headerLines] = head.toString("latin1").split("\r\n");
  const m = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(requestLine);
  if (!m) return respond(client, "400 Bad Request");
  if (m[1] !== "CONNECT") return respond(client, "405 Method Not Allowed", "Allow: CONNECT\r\n");
  if (auth) {
    const header = headerLines.find((l) => /^proxy-authorization:/i.test(l));
    const value = header ? header.slice(header.indexOf(":") + 1).trim() : "";
    const basic = /^basic\s+(\S+)$/i.exec(value);
    const given = basic ? Buffer.from(basic[1], "base64").toString("utf8") : undefined;
    if (given !== `${auth.username}:${auth.password}`) {
      return respond(client, "407 Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="conveer-test"\r\n');
    }
  }
  const a = /^\[([^\]]+)\]:(\d+)$/.exec(m[2]) ?? /^([^:[\]]+):(\d+)$/.exec(m[2]);
  const port = a ? Number(a[2]) : 0;
  if (!a || port < 1 || port > 65535) return respond(client, "400 Bad Request");

  const upstream = await dialTarget(a[1], port, sockets);
  if (upstream instanceof Error) return respond(client, (upstream as { code?: string }).code === "ETIMEDOUT" ? "504 Gateway Timeout" : "502 Bad Gateway");
  if (client.destroyed) return void upstream.destroy();
  client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
  stats.tunnels++;
  splice(client, upstream, r.detach(), stats);
}

function respond(client: net.Socket, status: string, extraHeaders = ""): void {
  // Graceful FIN; the reader keeps draining input, and close() or the peer ends the socket.
  client.end(`HTTP/1.1 ${status}\r\n${extraHeaders}Content-Length: 0\r\nConnection: close\r\n\r\n`);
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

async function handleSocks5(client: net.Socket, auth: Auth, sockets: Set<net.Socket>, stats: TunnelStats): Promise<void> {
  const r = reader(client);
  const need = async (n: number): Promise<Buffer> => {
    const b = n === 0 ? Buffer.alloc(0) : await r.until((buf) => (buf.length >= n ? n : -1));
    if (!(b instanceof Buffer)) throw new Error("client went away");
    return b;
  };
  // Greeting: VER NMETHODS METHODS...
  const hello = await need(2);
  if (hello[0] !== 5) return void client.destroy();
  const methods = await need(hello[1]);
  const method = auth ? (methods.includes(2) ? 2 : 0xff) : methods.includes(0) ? 0 : 0xff;
  client.write(Buffer.from([5, method]));
  if (method === 0xff) return void client.end();
  if (method === 2 && auth) {
    // RFC 1929: VER ULEN UNAME PLEN PASSWD -> VER STATUS
    const ver = await need(1);
    if (ver[0] !== 1) return void client.destroy();
    const user = (await need((await need(1))[0])).toString("utf8");
    const pass = (await need((await need(1))[0])).toString("utf8");
    const ok = user === auth.username && pass === auth.password;
    client.write(Buffer.from([1, ok ? 0 : 1]));
    if (!ok) return void client.end();
  }
  // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
  const req = await need(4);
  if (req[0] !== 5) return void client.destroy();
  let host: string;
  if (req[3] === 1) host = [...(await need(4))].join(".");
  else if (req[3] === 3) host = (await need((await need(1))[0])).toString("utf8");
  else if (req[3] === 4) {
    const b = await need(16);
    host = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(":");
  } else return socksReply(client, 8);
  const port = (await need(2)).readUInt16BE(0);
  if (req[1] !== 1) return socksReply(client, 7);

  const upstream = await dialTarget(host, port, sockets);
  if (upstream instanceof Error) return socksReply(client, socksCodeFor(upstream));
  if (client.destroyed) return void upstream.destroy();
  const bound = Buffer.alloc(10);
  bound.set([5, 0, 0, 1]);
  if (net.isIPv4(upstream.localAddress ?? "")) bound.set((upstream.localAddress as string).split(".").map(Number), 4);
  bound.writeUInt16BE(upstream.localPort ?? 0, 8);
  client.write(bound);
  stats.tunnels++;
  splice(client, upstream, r.detach(), stats);
}

function socksReply(client: net.Socket, rep: number): void {
  client.end(Buffer.from([5, rep, 0, 1, 0, 0, 0, 0, 0, 0]));
}

function socksCodeFor(err: Error): number {
  const code = (err as { code?: string }).code;
  if (code === "ECONNREFUSED") return 5;
  if (code === "ENETUNREACH") return 3;
  if (code === "EHOSTUNREACH" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "ETIMEDOUT") return 4;
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Plumbing

/** Connects to the target (10 s limit); resolves the socket, or the error (code ETIMEDOUT on timeout). */
function dialTarget(host: string, port: number, sockets: Set<net.Socket>): Promise<net.Socket | Error> {
  return new Promise((resolve) => {
    const upstream = net.connect({ host, port });
    track(sockets, upstream);
    upstream.setTimeout(10_000, () => upstream.destroy(Object.assign(new Error("target connect timed out"), { code: "ETIMEDOUT" })));
    upstream.once("connect", () => {
      upstream.setTimeout(0);
      upstream.off("error", onError);
      resolve(upstream);
    });
    const onError = (err: Error) => resolve(err);
    upstream.once("error", onError);
  });
}

/** Tunnels opened and HTTP requests seen through them. */
type TunnelStats = { tunnels: number; requests: number };
const REQUEST_LINE = /(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S+ HTTP\/1\.[01]\r\n/g;

/** Joins two sockets both ways; `leftover` (client bytes read past the handshake) goes upstream first. Counts request lines going up. */
function splice(client: net.Socket, upstream: net.Socket, leftover: Buffer, stats: TunnelStats): void {
  const count = (b: Buffer) => (stats.requests += b.toString("latin1").match(REQUEST_LINE)?.length ?? 0);
  count(leftover);
  client.on("data", count);
  if (leftover.length > 0) upstream.write(leftover);
  client.pipe(upstream);
  upstream.pipe(client);
  const both = () => {
    client.destroy();
    upstream.destroy();
  };
  client.once("close", both);
  upstream.once("close", both);
}

const TOO_LONG = Symbol("too long");

/** Buffers a socket's input for a handshake; `until(frame)` waits for a frame (-1 = need more, -2 = give up), null when the peer left. */
function reader(socket: net.Socket) {
  let buf: Buffer = Buffer.alloc(0);
  let done = false;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    wake?.();
  };
  const onGone = () => {
    done = true;
    wake?.();
  };
  socket.on("data", onData);
  socket.once("end", onGone);
  socket.once("close", onGone);
  return {
    async until(frame: (buf: Buffer) => number): Promise<Buffer | null | typeof TOO_LONG> {
      for (;;) {
        const n = frame(buf);
        if (n === -2) return TOO_LONG;
        if (n >= 0) {
          const out = buf.subarray(0, n);
          buf = buf.subarray(n);
          return out;
        }
        if (done) return null;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
    /** Stops buffering (pausing first, so no byte is dropped) and returns what was read past the handshake. */
    detach(): Buffer {
      socket.pause();
      socket.off("data", onData);
      socket.off("end", onGone);
      socket.off("close", onGone);
      return buf;
    },
  };
}

function track(sockets: Set<net.Socket>, socket: net.Socket): void {
  sockets.add(socket);
  socket.on("error", () => socket.destroy());
  socket.once("close", () => sockets.delete(socket));
}

function listen(server: net.Server, host = HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }));
}

function proxyHandle(server: net.Server, sockets: Set<net.Socket>, url: string, port: number, stats: TunnelStats): LocalProxy {
  return {
    url,
    port,
    get connections() {
      return stats.tunnels;
    },
    get requests() {
      return stats.requests;
    },
    close: closer(server, sockets),
  };
}

function authOf(opts: LocalProxyAuth | undefined): Auth {
  if (opts?.username === undefined && opts?.password === undefined) return undefined;
  return { username: opts.username ?? "", password: opts.password ?? "" };
}

function userinfo(auth: Auth): string {
  return auth ? `${encodeURIComponent(auth.username)}:${encodeURIComponent(auth.password)}@` : "";
}
