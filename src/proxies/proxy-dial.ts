/**
 * Dialing through a proxy: a TCP tunnel to a target via an HTTP CONNECT proxy (plain or over TLS)
 * or a SOCKS5 proxy, plus a never-throwing health probe built on it.
 *
 * Both handshakes are written here on node:net/node:tls rather than with the `socks` package:
 * `socks` arms an internal timer it never clears and, after the handshake, resumes the socket and
 * re-emits early bytes on the next tick (lost if the caller has not attached a listener yet).
 * Here one timer and one abort listener govern the whole dial and are always removed, and the
 * socket handed back holds any early tunnel bytes until the caller reads.
 */
import dns from "node:dns";
import net from "node:net";
import tls from "node:tls";
import { AppError } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";

/** A proxy to dial: "http" = HTTP CONNECT, "https" = HTTP CONNECT over TLS to the proxy, "socks5" = SOCKS5 (RFC 1928/1929). */
export type ProxyEndpoint = { protocol: "http" | "https" | "socks5"; host: string; port: number; username?: string; password?: string };

/** An open tunnel (the caller owns the socket: attach an "error" listener, destroy it when done) and the time to open it, in whole ms. */
export type DialResult = { socket: net.Socket; latencyMs: number };

/** How to dial: an overall deadline for the whole handshake, an optional abort signal, and TLS settings for "https" proxies. */
export type DialOptions = {
  timeoutMs: number;
  signal?: AbortSignal;
  /** For "https" proxies: extra trusted CAs, SNI override, or (not advised) rejectUnauthorized: false. */
  tls?: Pick<tls.ConnectionOptions, "ca" | "rejectUnauthorized" | "servername">;
  /**
   * The proxy address policy: says why an address of the proxy is refused ("" to allow). Checked on an
   * IP literal before connecting, and on every address a host name resolves to in the connect's own
   * lookup (so a name re-pointed at an internal address after it was added is still refused).
   */
  refuseAddress?: (address: string) => string;
};

/** What went wrong, machine-readable; the message says it for operators. */
export type ProxyDialErrorKind =
  | "invalid" // bad arguments; nothing was dialed
  | "aborted" // the AbortSignal fired
  | "timeout" // no complete answer within timeoutMs
  | "refused" // the proxy port refused the TCP connection
  | "unreachable" // the proxy host could not be resolved or routed to
  | "closed" // the proxy closed or reset the connection mid-handshake
  | "tls" // the TLS handshake with an "https" proxy failed
  | "auth" // credentials missing, rejected, or no acceptable auth method
  | "target_unreachable" // the proxy is fine but could not connect to the target
  | "rejected" // the proxy refused to open this tunnel (policy, unsupported request)
  | "forbidden" // the proxy's address is refused by the proxy address policy; nothing was dialed
  | "protocol"; // the proxy answered something that is not HTTP CONNECT / SOCKS5

/** A failed dial: an AppError (INVALID_ARGUMENT, CANCELLED or UNAVAILABLE) with a `kind` and the proxy's "host:port". */
export class ProxyDialError extends AppError {
  readonly kind: ProxyDialErrorKind;
  readonly proxy: string;
  constructor(kind: ProxyDialErrorKind, proxy: string, message: string, options?: { cause?: unknown }) {
    super(codeOf(kind), message, options);
    this.name = "ProxyDialError";
    this.kind = kind;
    this.proxy = proxy;
  }
}

function codeOf(kind: ProxyDialErrorKind): ErrorCode {
  if (kind === "invalid") return "INVALID_ARGUMENT";
  if (kind === "aborted") return "CANCELLED";
  if (kind === "forbidden") return "FAILED_PRECONDITION";
  return "UNAVAILABLE";
}

/** Longest HTTP response head accepted from a proxy. */
const MAX_HTTP_HEAD = 64 * 1024;
/** setTimeout's limit; larger delays would fire at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

type Target = { host: string; port: number };
/** Mutable facts about one dial, read by the timeout and error paths; `stage` is a noun phrase ("TLS handshake"). */
type DialState = { socket: net.Socket | undefined; stage: string; where: string };

/**
 * Opens a TCP tunnel through the proxy to target "host:port" (HTTP CONNECT with Proxy-Authorization Basic,
 * or SOCKS5 with user/pass auth). The whole dial (TCP connect, TLS, handshake) must finish within
 * opts.timeoutMs; on timeout, abort or any failure the socket is destroyed and a ProxyDialError is thrown.
 * The signal only governs the dial: once resolved, the tunnel is the caller's.
 */
export async function dialThroughProxy(proxy: ProxyEndpoint, target: { host: string; port: number }, opts: DialOptions): Promise<DialResult> {
  const started = performance.now();
  const p = checkEndpoint(proxy);
  const t = checkTarget(target, p);
  const where = hostPort(p.host, p.port);
  const { timeoutMs, signal } = opts;
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new ProxyDialError("invalid", where, `timeoutMs must be a positive number of milliseconds up to ${MAX_TIMEOUT_MS}, got ${String(timeoutMs)}`);
  }
  if (signal?.aborted) throw abortedError(where, signal.reason);
  const refused = net.isIP(p.host) && opts.refuseAddress ? opts.refuseAddress(p.host) : "";
  if (refused) throw new ProxyDialError("forbidden", where, refused);

  const state: DialState = { socket: undefined, stage: "TCP connect", where };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new ProxyDialError("timeout", where, `proxy ${where} did not answer within ${timeoutMs} ms (during the ${state.stage})`));
    }, timeoutMs);
    if (signal) {
      onAbort = () => reject(abortedError(where, signal.reason));
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  try {
    // Promise.race subscribes to both, so the loser's later rejection is handled (ignored).
    const socket = await Promise.race([establish(p, t, opts, state), guard]);
    return { socket, latencyMs: Math.max(0, Math.round(performance.now() - started)) };
  } catch (err) {
    state.socket?.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Health probe: dials, measures latency, destroys the socket; never throws. On failure `error` is the
 * ProxyDialError message and `latencyMs` the time until the failure; on success `error` is "".
 */
export async function probeProxy(
  proxy: ProxyEndpoint,
  target: { host: string; port: number },
  opts: DialOptions,
): Promise<{ ok: boolean; latencyMs: number; error: string }> {
  const started = performance.now();
  try {
    const { socket, latencyMs } = await dialThroughProxy(proxy, target, opts);
    socket.destroy();
    return { ok: true, latencyMs, error: "" };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    return { ok: false, latencyMs: Math.max(0, Math.round(performance.now() - started)), error: error || "unknown error" };
  }
}

// ---------------------------------------------------------------------------------------------
// The dial itself

async function establish(p: ProxyEndpoint, t: Target, opts: DialOptions, state: DialState): Promise<net.Socket> {
  const socket = await connectToProxy(p, opts, state);
  if (p.protocol === "socks5") await socks5Handshake(socket, p, t, state);
  else await httpConnectHandshake(socket, p, t, state);
  socket.off("error", swallow);
  socket.setNoDelay(true);
  return socket;
}

/** Error code of a lookup refused by the address policy (carried through net's lookup callback). */
const POLICY_REFUSED = "ERR_PROXY_ADDRESS_POLICY";

/** dns.lookup for net.connect that fails when any address the name resolves to is refused (all are checked, whichever one is dialed). */
function guardedLookup(refuse: (address: string) => string): net.LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "", 0);
      const why = addresses.map((a) => refuse(a.address)).find((r) => r !== "");
      if (why) return callback(Object.assign(new Error(why), { code: POLICY_REFUSED }), "", 0);
      if (options.all) return (callback as unknown as (e: null, all: dns.LookupAddress[]) => void)(null, addresses);
      if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to no address`), { code: "ENOTFOUND" }), "", 0);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
}

/** Kept on the socket for the whole dial so a late or second error can never become an uncaught exception. */
function swallow(): void {}

function connectToProxy(p: ProxyEndpoint, opts: DialOptions, state: DialState): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    let ready: "connect" | "secureConnect";
    const lookup = opts.refuseAddress && !net.isIP(p.host) ? guardedLookup(opts.refuseAddress) : undefined;
    if (p.protocol === "https") {
      socket = tls.connect({
        ...opts.tls,
        host: p.host,
        port: p.port,
        lookup,
        servername: opts.tls?.servername ?? (net.isIP(p.host) ? undefined : p.host),
      });
      socket.once("connect", () => {
        state.stage = "TLS handshake";
      });
      ready = "secureConnect";
    } else {
      socket = net.connect({ host: p.host, port: p.port, lookup });
      ready = "connect";
    }
    state.socket = socket;
    socket.on("error", swallow);
    const onReady = () => {
      socket.off("error", onError);
      resolve(socket);
    };
    const onError = (err: Error) => {
      socket.off(ready, onReady);
      reject(socketError(err, state));
    };
    socket.once(ready, onReady);
    socket.once("error", onError);
  });
}

async function httpConnectHandshake(socket: net.Socket, p: ProxyEndpoint, t: Target, state: DialState): Promise<void> {
  const where = state.where;
  const authority = hostPort(t.host, t.port);
  const creds = credentials(p);
  let request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (creds) request += `Proxy-Authorization: Basic ${Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64")}\r\n`;
  request += "\r\n";
  state.stage = `HTTP CONNECT to ${authority}`;
  socket.write(request);

  const head = await readFrame(socket, state, (buf) => {
    const end = buf.indexOf("\r\n\r\n");
    if (end >= 0) return end + 4;
    if (buf.length > MAX_HTTP_HEAD) throw new ProxyDialError("protocol", where, `proxy ${where} sent an HTTP response head over ${MAX_HTTP_HEAD} bytes`);
    return -1;
  });
  const statusLine = head.toString("latin1", 0, Math.max(0, head.indexOf("\r\n")));
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) {
    throw new ProxyDialError("protocol", where, `proxy ${where} did not answer like an HTTP proxy (got ${JSON.stringify(statusLine.slice(0, 80))})`);
  }
  const status = Number(m[1]);
  const reason = (m[2] ?? "").trim();
  if (status >= 200 && status < 300) return;
  if (status === 407) {
    throw new ProxyDialError(
      "auth",
      where,
      creds
        ? `proxy ${where} rejected the credentials (HTTP 407)`
        : `proxy ${where} requires authentication but no credentials were configured (HTTP 407)`,
    );
  }
  if (status === 502 || status === 503 || status === 504) {
    throw new ProxyDialError("target_unreachable", where, `proxy ${where} could not reach target ${authority} (HTTP ${status})`);
  }
  throw new ProxyDialError("rejected", where, `proxy ${where} refused to open a tunnel to ${authority} (HTTP ${status}${reason ? ` ${reason}` : ""})`);
}

const SOCKS5_REPLIES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

async function socks5Handshake(socket: net.Socket, p: ProxyEndpoint, t: Target, state: DialState): Promise<void> {
  const where = state.where;
  const authority = hostPort(t.host, t.port);
  const creds = credentials(p);

  // RFC 1928 §3: version, methods (0x00 no auth, 0x02 username/password).
  state.stage = "SOCKS5 greeting";
  socket.write(Buffer.from(creds ? [5, 2, 0x00, 0x02] : [5, 1, 0x00]));
  const choice = await readFrame(socket, state, (buf) => (buf.length >= 2 ? 2 : -1));
  if (choice[0] !== 5) {
    const looksHttp = choice.toString("latin1") === "HT";
    throw new ProxyDialError(
      "protocol",
      where,
      `proxy ${where} did not answer like a SOCKS5 proxy (first reply byte 0x${hex(choice[0])}${looksHttp ? ", looks like HTTP" : ""})`,
    );
  }
  const method = choice[1];
  if (method === 0xff) {
    throw new ProxyDialError(
      "auth",
      where,
      creds
        ? `proxy ${where} accepted none of the offered SOCKS5 authentication methods (no auth, username/password)`
        : `proxy ${where} requires SOCKS5 authentication but no credentials were configured`,
    );
  }
  if (method === 0x02 && creds) {
    // RFC 1929: version 1, username, password; reply status 0 = success.
    state.stage = "SOCKS5 authentication";
    const user = Buffer.from(creds.username, "utf8");
    const pass = Buffer.from(creds.password, "utf8");
    socket.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass]));
    const verdict = await readFrame(socket, state, (buf) => (buf.length >= 2 ? 2 : -1));
    if (verdict[1] !== 0) {
      throw new ProxyDialError("auth", where, `proxy ${where} rejected the credentials (SOCKS5 authentication failed, status 0x${hex(verdict[1])})`);
    }
  } else if (method !== 0x00) {
    throw new ProxyDialError("protocol", where, `proxy ${where} chose SOCKS5 authentication method 0x${hex(method)}, which was not offered`);
  }

  // RFC 1928 §4: CONNECT request; §6: reply.
  state.stage = `SOCKS5 CONNECT to ${authority}`;
  socket.write(socks5ConnectRequest(t));
  await readFrame(socket, state, (buf) => {
    if (buf.length < 2) return -1;
    if (buf[0] !== 5) throw new ProxyDialError("protocol", where, `proxy ${where} sent a malformed SOCKS5 reply (version 0x${hex(buf[0])})`);
    const rep = buf[1];
    if (rep !== 0) {
      const what = `SOCKS5 reply ${rep}: ${SOCKS5_REPLIES[rep] ?? "unknown error"}`;
      if (rep === 2 || rep === 7 || rep === 8) {
        throw new ProxyDialError("rejected", where, `proxy ${where} refused to open a tunnel to ${authority} (${what})`);
      }
      throw new ProxyDialError("target_unreachable", where, `proxy ${where} could not reach target ${authority} (${what})`);
    }
    if (buf.length < 5) return -1;
    const atyp = buf[3];
    const size = atyp === 1 ? 10 : atyp === 4 ? 22 : atyp === 3 ? 7 + buf[4] : -2;
    if (size === -2) throw new ProxyDialError("protocol", where, `proxy ${where} sent a SOCKS5 reply with unknown address type 0x${hex(atyp)}`);
    return buf.length >= size ? size : -1;
  });
}

function socks5ConnectRequest(t: Target): Buffer {
  let address: Buffer;
  if (net.isIPv4(t.host)) {
    address = Buffer.from([1, ...t.host.split(".").map(Number)]);
  } else if (net.isIPv6(t.host)) {
    address = Buffer.concat([Buffer.from([4]), ipv6Bytes(t.host)]);
  } else {
    const name = Buffer.from(t.host, "utf8");
    address = Buffer.concat([Buffer.from([3, name.length]), name]);
  }
  const port = Buffer.alloc(2);
  port.writeUInt16BE(t.port);
  return Buffer.concat([Buffer.from([5, 1, 0]), address, port]);
}

function ipv6Bytes(ip: string): Buffer {
  // Expand "::" and a trailing dotted quad by hand into the 16-byte form (the input passed net.isIPv6).
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right] = text.includes("::") ? text.split("::") : [text, undefined];
  const l = left ? left.split(":") : [];
  const r = right ? right.split(":") : [];
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill("0"), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * Reads one handshake frame in paused mode ("readable" + read()), so nothing is lost: `parse` returns the
 * frame length once the buffer holds a whole frame (-1 = need more, or throws); bytes past the frame are
 * unshifted back. Removing the "readable" listener returns the stream to its initial mode, so a later
 * "data" listener or pipe() starts the flow as on a fresh socket.
 */
function readFrame(socket: net.Socket, state: DialState, parse: (buf: Buffer) => number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const cleanup = () => {
      socket.off("readable", onReadable);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        let n: number;
        try {
          n = parse(buf);
        } catch (err) {
          cleanup();
          reject(err);
          return;
        }
        if (n >= 0) {
          cleanup();
          if (n < buf.length) socket.unshift(buf.subarray(n));
          resolve(buf.subarray(0, n));
          return;
        }
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new ProxyDialError("closed", state.where, `proxy ${state.where} closed the connection during the ${state.stage}`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(socketError(err, state));
    };
    socket.on("readable", onReadable);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.once("error", onError);
  });
}

// ---------------------------------------------------------------------------------------------
// Errors and validation

const RESOLVE_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_NONAME"]);
const UNREACHABLE_CODES = new Set(["EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EADDRNOTAVAIL", "ETIMEDOUT"]);
const RESET_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; errors?: unknown[] };
  if (typeof e?.code === "string") return e.code;
  // Happy-eyeballs connects report an AggregateError of the per-address failures.
  if (Array.isArray(e?.errors)) for (const inner of e.errors) if (typeof (inner as { code?: unknown })?.code === "string") return (inner as { code: string }).code;
  return "";
}

function socketError(err: Error, state: DialState): ProxyDialError {
  const where = state.where;
  const code = errorCode(err);
  if (code === POLICY_REFUSED) return new ProxyDialError("forbidden", where, err.message, { cause: err });
  if (code === "ECONNREFUSED") return new ProxyDialError("refused", where, `proxy ${where} refused the connection (ECONNREFUSED)`, { cause: err });
  if (RESOLVE_CODES.has(code)) return new ProxyDialError("unreachable", where, `proxy host of ${where} could not be resolved (${code})`, { cause: err });
  if (UNREACHABLE_CODES.has(code)) return new ProxyDialError("unreachable", where, `proxy ${where} is unreachable (${code})`, { cause: err });
  if (RESET_CODES.has(code)) return new ProxyDialError("closed", where, `proxy ${where} reset the connection during the ${state.stage} (${code})`, { cause: err });
  if (state.stage === "TLS handshake") {
    return new ProxyDialError("tls", where, `TLS handshake with proxy ${where} failed: ${err.message}${code ? ` (${code})` : ""}`, { cause: err });
  }
  return new ProxyDialError("closed", where, `proxy ${where}: connection failed during the ${state.stage}: ${err.message}${code ? ` (${code})` : ""}`, {
    cause: err,
  });
}

function abortedError(where: string, reason: unknown): ProxyDialError {
  const why = reason instanceof Error ? reason.message : reason === undefined ? "" : String(reason);
  return new ProxyDialError("aborted", where, `dial through proxy ${where} was aborted${why ? `: ${why}` : ""}`, { cause: reason });
}

function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function hex(n: number | undefined): string {
  return (n ?? 0).toString(16).padStart(2, "0");
}

function credentials(p: ProxyEndpoint): { username: string; password: string } | undefined {
  const username = p.username ?? "";
  const password = p.password ?? "";
  return username === "" && password === "" ? undefined : { username, password };
}

/** "[::1]" (as URL.hostname gives it) becomes "::1". */
function bare(host: string): string {
  return /^\[.*\]$/.test(host) ? host.slice(1, -1) : host;
}

function checkHost(host: unknown): string | undefined {
  if (typeof host !== "string") return undefined;
  const h = bare(host.trim());
  return h !== "" && !/[\s\x00-\x1f\x7f/@]/.test(h) ? h : undefined;
}

function checkPort(port: unknown): boolean {
  return typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535;
}

function checkEndpoint(proxy: ProxyEndpoint): ProxyEndpoint {
  const label = `${proxy?.host}:${proxy?.port}`;
  if (proxy?.protocol !== "http" && proxy?.protocol !== "https" && proxy?.protocol !== "socks5") {
    throw new ProxyDialError("invalid", label, `proxy protocol must be http, https or socks5, got ${JSON.stringify(proxy?.protocol)}`);
  }
  const host = checkHost(proxy.host);
  if (host === undefined) throw new ProxyDialError("invalid", label, `proxy host ${JSON.stringify(proxy.host)} is not a valid host name or IP address`);
  if (!checkPort(proxy.port)) throw new ProxyDialError("invalid", label, `proxy port must be an integer between 1 and 65535, got ${String(proxy.port)}`);
  const p: ProxyEndpoint = { ...proxy, host };
  const where = hostPort(host, proxy.port);
  const creds = credentials(p);
  if (creds && proxy.protocol === "socks5") {
    if (Buffer.byteLength(creds.username) > 255 || Buffer.byteLength(creds.password) > 255) {
      throw new ProxyDialError("invalid", where, `SOCKS5 username and password must each be at most 255 bytes (proxy ${where})`);
    }
  } else if (creds && creds.username.includes(":")) {
    throw new ProxyDialError("invalid", where, `HTTP proxy username must not contain ":" (Basic auth cannot express it; proxy ${where})`);
  }
  return p;
}

function checkTarget(target: { host: string; port: number }, p: ProxyEndpoint): Target {
  const where = hostPort(p.host, p.port);
  const host = checkHost(target?.host);
  if (host === undefined) throw new ProxyDialError("invalid", where, `target host ${JSON.stringify(target?.host)} is not a valid host name or IP address`);
  if (!checkPort(target.port)) throw new ProxyDialError("invalid", where, `target port must be an integer between 1 and 65535, got ${String(target.port)}`);
  if (p.protocol === "socks5" && !net.isIP(host) && Buffer.byteLength(host) > 255) {
    throw new ProxyDialError("invalid", where, `target host name is longer than SOCKS5 allows (255 bytes)`);
  }
  return { host, port: target.port };
}
