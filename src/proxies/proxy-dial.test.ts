import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { dialThroughProxy, probeProxy, ProxyDialError } from "./proxy-dial.ts";
import type { ProxyEndpoint } from "./proxy-dial.ts";
import {
  localProxyTlsCert,
  startEchoTarget,
  startHangingProxy,
  startHttpConnectProxy,
  startRefusingProxy,
  startSocks5Proxy,
} from "../../test/support/local-proxies.ts";
import type { LocalProxy, LocalTarget } from "../../test/support/local-proxies.ts";

const T = { timeout: 15_000 };

/** "socks5://u:p@127.0.0.1:1080" → ProxyEndpoint. */
function endpoint(url: string, override: Partial<ProxyEndpoint> = {}): ProxyEndpoint {
  const u = new URL(url);
  return {
    protocol: u.protocol.slice(0, -1) as ProxyEndpoint["protocol"],
    host: u.hostname,
    port: Number(u.port),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...override,
  };
}

/** `p`, or a test failure naming `what` after `ms` (so a broken tunnel fails the test instead of hanging the run). */
async function within<V>(p: Promise<V>, ms: number, what: string): Promise<V> {
  const ac = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: ac.signal }).then(() => assert.fail(`${what}: nothing after ${ms} ms`))]);
  } finally {
    ac.abort();
  }
}

/** Writes `payload` and resolves with the first payload.length bytes read back (fails after 5 s). */
function echoRoundTrip(socket: net.Socket, payload: Buffer): Promise<Buffer> {
  return within(new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let n = 0;
    socket.on("data", (chunk: Buffer) => {
      got.push(chunk);
      n += chunk.length;
      if (n >= payload.length) resolve(Buffer.concat(got));
    });
    socket.once("error", reject);
    socket.once("close", () => reject(new Error(`socket closed after ${n} of ${payload.length} bytes`)));
    socket.write(payload);
  }), 5000, "echo through the tunnel");
}

/** Resolves with the rejection of `p` as a ProxyDialError (fails the test if it resolves or throws something else). */
async function dialError(p: Promise<unknown>): Promise<ProxyDialError> {
  try {
    const r = (await p) as { socket?: net.Socket };
    r?.socket?.destroy();
  } catch (err) {
    assert.ok(err instanceof ProxyDialError, `expected ProxyDialError, got ${String(err)}`);
    return err;
  }
  assert.fail("the dial succeeded but was expected to fail");
}

/** A server that accepts and never answers, reporting when the client's socket is closed (proves the dialer destroyed it). */
async function observedHangingServer(): Promise<{ port: number; accepted: Promise<void>; clientGone: Promise<void>; close(): Promise<void> }> {
  let onAccept!: () => void;
  let onGone!: () => void;
  const accepted = new Promise<void>((r) => (onAccept = r));
  const clientGone = new Promise<void>((r) => (onGone = r));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.resume();
    s.once("close", onGone);
    onAccept();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted,
    clientGone,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A fake proxy that completes the handshake and sends `banner` in the same write as its final reply. */
async function eagerProxy(kind: "http" | "socks5", banner: string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    let buf = Buffer.alloc(0);
    let step = 0;
    s.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (kind === "http" && buf.includes("\r\n\r\n")) {
        s.write(`HTTP/1.1 200 Connection Established\r\n\r\n${banner}`);
        buf = Buffer.alloc(0);
      }
      if (kind === "socks5" && step === 0 && buf.length >= 3) {
        s.write(Buffer.from([5, 0]));
        buf = buf.subarray(3);
        step = 1;
      }
      if (kind === "socks5" && step === 1 && buf.length >= 10) {
        s.write(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 80]), Buffer.from(banner)]));
        step = 2;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A server that runs `onSocket` for each connection (for proxies that misbehave in one specific way). */
async function scriptedServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

function timeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

describe("dialThroughProxy through real local proxies", () => {
  let echo: LocalTarget;
  let http: LocalProxy;
  let https: LocalProxy;
  let socks: LocalProxy;
  let openHttp: LocalProxy;
  let openSocks: LocalProxy;

  before(async () => {
    echo = await startEchoTarget();
    http = await startHttpConnectProxy({ username: "alice", password: "s3cret:with colon" });
    https = await startHttpConnectProxy({ username: "alice", password: "tls-pass", tls: true });
    socks = await startSocks5Proxy({ username: "bob", password: "hunter2" });
    openHttp = await startHttpConnectProxy();
    openSocks = await startSocks5Proxy();
  });
  after(async () => {
    await Promise.all([echo, http, https, socks, openHttp, openSocks].map((x) => x?.close()));
  });

  test("HTTP CONNECT with Basic auth tunnels bytes to the echo target", T, async () => {
    const before = http.connections;
    const { socket, latencyMs } = await dialThroughProxy(endpoint(http.url), echo, { timeoutMs: 5000 });
    try {
      assert.ok(Number.isInteger(latencyMs) && latencyMs >= 0, `latencyMs ${latencyMs}`);
      const payload = randomBytes(256 * 1024);
      assert.deepEqual(await echoRoundTrip(socket, payload), payload);
      assert.equal(http.connections, before + 1);
    } finally {
      socket.destroy();
    }
  });

  test("SOCKS5 with username/password tunnels bytes to an IPv4 target", T, async () => {
    const before = socks.connections;
    const { socket } = await dialThroughProxy(endpoint(socks.url), echo, { timeoutMs: 5000 });
    try {
      const payload = randomBytes(256 * 1024);
      assert.deepEqual(await echoRoundTrip(socket, payload), payload);
      assert.equal(socks.connections, before + 1);
    } finally {
      socket.destroy();
    }
  });

  test("SOCKS5 tunnels to a domain-name target (resolved by the proxy)", T, async () => {
    const { socket } = await dialThroughProxy(endpoint(socks.url), { host: "localhost", port: echo.port }, { timeoutMs: 5000 });
    try {
      const payload = Buffer.from("hello by name");
      assert.deepEqual(await echoRoundTrip(socket, payload), payload);
    } finally {
      socket.destroy();
    }
  });

  test("open proxies (no credentials) tunnel too, for both kinds", T, async () => {
    for (const p of [openHttp, openSocks]) {
      const { socket } = await dialThroughProxy(endpoint(p.url), echo, { timeoutMs: 5000 });
      try {
        assert.deepEqual(await echoRoundTrip(socket, Buffer.from(p.url)), Buffer.from(p.url));
      } finally {
        socket.destroy();
      }
    }
  });

  test("https proxy: CONNECT over TLS tunnels bytes when the proxy's CA is trusted", T, async () => {
    const before = https.connections;
    const { socket } = await dialThroughProxy(endpoint(https.url), echo, { timeoutMs: 5000, tls: { ca: localProxyTlsCert } });
    try {
      const payload = randomBytes(64 * 1024);
      assert.deepEqual(await echoRoundTrip(socket, payload), payload);
      assert.equal(https.connections, before + 1);
    } finally {
      socket.destroy();
    }
  });

  test("https proxy: an untrusted certificate is a clear TLS error", T, async () => {
    const err = await dialError(dialThroughProxy(endpoint(https.url), echo, { timeoutMs: 5000 }));
    assert.equal(err.kind, "tls");
    assert.match(err.message, /^TLS handshake with proxy 127\.0\.0\.1:\d+ failed: self[- ]signed certificate/);
  });

  test("bytes the proxy sends right after its reply are kept until the caller reads", T, async () => {
    for (const kind of ["http", "socks5"] as const) {
      const fake = await eagerProxy(kind, "BANNER-" + kind);
      try {
        const { socket } = await dialThroughProxy({ protocol: kind, host: "127.0.0.1", port: fake.port }, echo, { timeoutMs: 5000 });
        try {
          await sleep(50); // the caller is busy elsewhere before it reads
          const got = await within(
            new Promise<string>((resolve) => {
              let s = "";
              socket.on("data", (c: Buffer) => {
                s += c.toString();
                if (s.length >= `BANNER-${kind}`.length) resolve(s);
              });
            }),
            2000,
            `${kind} banner`,
          );
          assert.equal(got, `BANNER-${kind}`);
        } finally {
          socket.destroy();
        }
      } finally {
        await fake.close();
      }
    }
  });

  test("HTTP: wrong or missing credentials give a clear 407 error", T, async () => {
    const wrong = await dialError(dialThroughProxy(endpoint(http.url, { password: "nope" }), echo, { timeoutMs: 5000 }));
    assert.equal(wrong.kind, "auth");
    assert.equal(wrong.code, "UNAVAILABLE");
    assert.match(wrong.message, /^proxy 127\.0\.0\.1:\d+ rejected the credentials \(HTTP 407\)$/);
    const missing = await dialError(
      dialThroughProxy(endpoint(http.url, { username: undefined, password: undefined }), echo, { timeoutMs: 5000 }),
    );
    assert.equal(missing.kind, "auth");
    assert.match(missing.message, /requires authentication but no credentials were configured \(HTTP 407\)/);
  });

  test("SOCKS5: wrong or missing credentials give a clear authentication error", T, async () => {
    const wrong = await dialError(dialThroughProxy(endpoint(socks.url, { password: "nope" }), echo, { timeoutMs: 5000 }));
    assert.equal(wrong.kind, "auth");
    assert.match(wrong.message, /^proxy 127\.0\.0\.1:\d+ rejected the credentials \(SOCKS5 authentication failed/);
    const missing = await dialError(
      dialThroughProxy(endpoint(socks.url, { username: undefined, password: undefined }), echo, { timeoutMs: 5000 }),
    );
    assert.equal(missing.kind, "auth");
    assert.match(missing.message, /requires SOCKS5 authentication but no credentials were configured/);
  });

  test("a target the proxy cannot reach is reported as such, for both kinds", T, async () => {
    const dead = await startRefusingProxy(); // a closed port on 127.0.0.1, used as the target
    const target = { host: "127.0.0.1", port: dead.port };
    const viaHttp = await dialError(dialThroughProxy(endpoint(http.url), target, { timeoutMs: 5000 }));
    assert.equal(viaHttp.kind, "target_unreachable");
    assert.equal(viaHttp.message, `proxy 127.0.0.1:${http.port} could not reach target 127.0.0.1:${dead.port} (HTTP 502)`);
    const viaSocks = await dialError(dialThroughProxy(endpoint(socks.url), target, { timeoutMs: 5000 }));
    assert.equal(viaSocks.kind, "target_unreachable");
    assert.equal(
      viaSocks.message,
      `proxy 127.0.0.1:${socks.port} could not reach target 127.0.0.1:${dead.port} (SOCKS5 reply 5: connection refused)`,
    );
  });

  test("the dial leaves no timer or abort listener behind, on success or failure", T, async () => {
    const ac = new AbortController();
    const baseline = timeouts();
    const ok = await dialThroughProxy(endpoint(socks.url), echo, { timeoutMs: 60_000, signal: ac.signal });
    ok.socket.destroy();
    const refused = await startRefusingProxy();
    await dialError(dialThroughProxy(endpoint(refused.url), echo, { timeoutMs: 60_000, signal: ac.signal }));
    await dialError(dialThroughProxy(endpoint(http.url, { password: "x" }), echo, { timeoutMs: 60_000, signal: ac.signal }));
    assert.equal(getEventListeners(ac.signal, "abort").length, 0);
    assert.ok(timeouts() <= baseline, `active timers grew from ${baseline} to ${timeouts()}`);
  });
});

describe("dialThroughProxy failures before a tunnel exists", () => {
  test("a refusing proxy is reported as refused, for every protocol", T, async () => {
    for (const scheme of ["http", "https", "socks5"] as const) {
      const refusing = await startRefusingProxy({ scheme });
      const err = await dialError(dialThroughProxy(endpoint(refusing.url), { host: "example.com", port: 80 }, { timeoutMs: 2000 }));
      assert.equal(err.kind, "refused");
      assert.equal(err.message, `proxy 127.0.0.1:${refusing.port} refused the connection (ECONNREFUSED)`);
      assert.equal(err.proxy, `127.0.0.1:${refusing.port}`);
    }
  });

  for (const [protocol, stage] of [
    ["http", /\(during the HTTP CONNECT to example\.com:80\)$/],
    ["https", /\(during the TLS handshake\)$/],
    ["socks5", /\(during the SOCKS5 greeting\)$/],
  ] as const) {
    test(`a hanging ${protocol} proxy times out within timeoutMs and the socket is destroyed`, T, async () => {
      const hang = await observedHangingServer();
      try {
        const timeoutMs = 300;
        const started = performance.now();
        const err = await dialError(
          dialThroughProxy({ protocol, host: "127.0.0.1", port: hang.port, username: "u", password: "p" }, { host: "example.com", port: 80 }, { timeoutMs }),
        );
        const elapsed = performance.now() - started;
        assert.equal(err.kind, "timeout");
        assert.match(err.message, new RegExp(`^proxy 127\\.0\\.0\\.1:${hang.port} did not answer within 300 ms`));
        assert.match(err.message, stage);
        assert.ok(elapsed >= timeoutMs - 20, `gave up too early: ${elapsed} ms`);
        assert.ok(elapsed <= timeoutMs + 500, `took ${elapsed} ms`);
        await within(hang.accepted, 1000, "the hanging proxy never saw the dial");
        await within(hang.clientGone, 1000, "the dialer left its socket open");
      } finally {
        await hang.close();
      }
    });
  }

  test("a proxy that hangs up mid-handshake, or speaks another protocol, is named as such", T, async () => {
    const target = { host: "example.com", port: 80 };
    const hangUp = await scriptedServer((s) => s.once("data", () => s.end()));
    const httpServer = await scriptedServer((s) => s.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"));
    const sshServer = await scriptedServer((s) => s.end("SSH-2.0-OpenSSH_9.6\r\n\r\n"));
    try {
      const closedHttp = await dialError(dialThroughProxy({ protocol: "http", host: "127.0.0.1", port: hangUp.port }, target, { timeoutMs: 2000 }));
      assert.equal(closedHttp.kind, "closed");
      assert.equal(closedHttp.message, `proxy 127.0.0.1:${hangUp.port} closed the connection during the HTTP CONNECT to example.com:80`);
      const closedSocks = await dialError(dialThroughProxy({ protocol: "socks5", host: "127.0.0.1", port: hangUp.port }, target, { timeoutMs: 2000 }));
      assert.equal(closedSocks.message, `proxy 127.0.0.1:${hangUp.port} closed the connection during the SOCKS5 greeting`);
      const notSocks = await dialError(dialThroughProxy({ protocol: "socks5", host: "127.0.0.1", port: httpServer.port }, target, { timeoutMs: 2000 }));
      assert.equal(notSocks.kind, "protocol");
      assert.match(notSocks.message, /did not answer like a SOCKS5 proxy \(first reply byte 0x48, looks like HTTP\)$/);
      const notHttp = await dialError(dialThroughProxy({ protocol: "http", host: "127.0.0.1", port: sshServer.port }, target, { timeoutMs: 2000 }));
      assert.equal(notHttp.kind, "protocol");
      assert.match(notHttp.message, /did not answer like an HTTP proxy \(got "SSH-2\.0-OpenSSH_9\.6"\)$/);
    } finally {
      await Promise.all([hangUp.close(), httpServer.close(), sshServer.close()]);
    }
  });

  test("an AbortSignal aborts a dial in progress, destroying the socket", T, async () => {
    const hang = await observedHangingServer();
    try {
      const ac = new AbortController();
      const started = performance.now();
      setTimeout(() => ac.abort(new Error("shutting down")), 100);
      const err = await dialError(
        dialThroughProxy({ protocol: "socks5", host: "127.0.0.1", port: hang.port }, { host: "example.com", port: 80 }, { timeoutMs: 10_000, signal: ac.signal }),
      );
      assert.ok(performance.now() - started < 1000, "abort was not prompt");
      assert.equal(err.kind, "aborted");
      assert.equal(err.code, "CANCELLED");
      assert.equal(err.message, `dial through proxy 127.0.0.1:${hang.port} was aborted: shutting down`);
      await within(hang.clientGone, 1000, "the dialer left its socket open");
    } finally {
      await hang.close();
    }
  });

  test("an already-aborted signal fails at once without connecting", T, async () => {
    const hang = await startHangingProxy();
    try {
      const err = await dialError(
        dialThroughProxy(endpoint(hang.url), { host: "example.com", port: 80 }, { timeoutMs: 5000, signal: AbortSignal.abort() }),
      );
      assert.equal(err.kind, "aborted");
      await sleep(100);
      assert.equal(hang.connections, 0);
    } finally {
      await hang.close();
    }
  });

  test("invalid arguments are rejected before dialing", T, async () => {
    const target = { host: "example.com", port: 80 };
    const cases: Array<[ProxyEndpoint, { host: string; port: number }, number, RegExp]> = [
      [{ protocol: "ftp" as "http", host: "127.0.0.1", port: 1 }, target, 1000, /proxy protocol must be http, https or socks5/],
      [{ protocol: "http", host: "127.0.0.1", port: 0 }, target, 1000, /proxy port must be an integer between 1 and 65535, got 0/],
      [{ protocol: "http", host: "", port: 8080 }, target, 1000, /proxy host "" is not a valid host/],
      [{ protocol: "http", host: "127.0.0.1", port: 8080 }, { host: "a\r\nb", port: 80 }, 1000, /target host .* is not a valid host/],
      [{ protocol: "http", host: "127.0.0.1", port: 8080 }, { host: "example.com", port: 65536 }, 1000, /target port must be an integer/],
      [{ protocol: "http", host: "127.0.0.1", port: 8080 }, target, 0, /timeoutMs must be a positive number/],
      [{ protocol: "socks5", host: "127.0.0.1", port: 1080, username: "x".repeat(256) }, target, 1000, /at most 255 bytes/],
    ];
    for (const [proxy, tgt, timeoutMs, message] of cases) {
      const err = await dialError(dialThroughProxy(proxy, tgt, { timeoutMs }));
      assert.equal(err.kind, "invalid");
      assert.equal(err.code, "INVALID_ARGUMENT");
      assert.match(err.message, message);
    }
  });
});

describe("probeProxy", () => {
  test("reports ok with latency for a working proxy and closes the tunnel", T, async () => {
    const target = await observedHangingServer(); // the tunnel's far end: tells when the probe hung up
    const proxy = await startSocks5Proxy({ username: "u", password: "p" });
    try {
      const r = await probeProxy(endpoint(proxy.url), { host: "127.0.0.1", port: target.port }, { timeoutMs: 5000 });
      assert.deepEqual({ ...r, latencyMs: typeof r.latencyMs }, { ok: true, latencyMs: "number", error: "" });
      assert.ok(r.latencyMs >= 0);
      assert.equal(proxy.connections, 1);
      await within(target.clientGone, 1000, "the probe left its tunnel open");
    } finally {
      await Promise.all([target.close(), proxy.close()]);
    }
  });

  test("never throws: failures come back as ok=false with the operator message", T, async () => {
    const refusing = await startRefusingProxy();
    const hang = await startHangingProxy();
    try {
      const target = { host: "example.com", port: 80 };
      const refused = await probeProxy(endpoint(refusing.url), target, { timeoutMs: 2000 });
      assert.equal(refused.ok, false);
      assert.equal(refused.error, `proxy 127.0.0.1:${refusing.port} refused the connection (ECONNREFUSED)`);
      const slow = await probeProxy(endpoint(hang.url), target, { timeoutMs: 200 });
      assert.equal(slow.ok, false);
      assert.match(slow.error, /did not answer within 200 ms/);
      assert.ok(slow.latencyMs >= 190 && slow.latencyMs <= 700, `latencyMs ${slow.latencyMs}`);
      const invalid = await probeProxy({ protocol: "http", host: "127.0.0.1", port: 70000 }, target, { timeoutMs: 200 });
      assert.equal(invalid.ok, false);
      assert.match(invalid.error, /proxy port must be an integer/);
      const aborted = await probeProxy(endpoint(hang.url), target, { timeoutMs: 200, signal: AbortSignal.abort() });
      assert.equal(aborted.ok, false);
      assert.match(aborted.error, /was aborted/);
    } finally {
      await Promise.all([refusing.close(), hang.close()]);
    }
  });
});

describe("local proxies (test support)", () => {
  test("close() destroys open connections so nothing keeps a test alive", T, async () => {
    const echo = await startEchoTarget();
    const servers = [await startHangingProxy(), await startHttpConnectProxy(), await startSocks5Proxy()];
    const tunnel = await dialThroughProxy(endpoint(servers[1].url), echo, { timeoutMs: 5000 });
    tunnel.socket.on("error", () => {});
    const raw = [net.connect(servers[0].port, "127.0.0.1"), net.connect(servers[2].port, "127.0.0.1")];
    await Promise.all(raw.map((s) => new Promise((r) => s.once("connect", r))));
    const sockets = [tunnel.socket, ...raw];
    const allClosed = Promise.all(sockets.map((s) => new Promise((r) => s.once("close", r))));
    for (const s of raw) s.on("error", () => {});
    for (let i = 0; servers[0].connections < 1 && i < 200; i++) await sleep(5); // accepted by the server, not just the kernel
    const closing = Promise.all([...servers.map((s) => s.close()), echo.close()]);
    await within(allClosed, 1000, "a client socket stayed open after close()");
    await within(closing, 1000, "close() did not finish");
    assert.equal(servers[0].connections, 1); // the hanging proxy counts accepted connections
  });
});
