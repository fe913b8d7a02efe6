/**
 * The proxy address policy (against SSRF): proxy hosts and health-check targets on loopback, private,
 * shared (CGNAT), link-local, unspecified, multicast or reserved addresses (IPv4-mapped and NAT64 IPv6
 * forms included), or on the store's own host:port, are refused unless CONVEER_PROXY_ALLOW_PRIVATE=true.
 * The sandbox's own address is always an allowed check target. Host names are resolved and every
 * address they resolve to must pass.
 */
import dns from "node:dns";
import net from "node:net";
import { AppError } from "../errors.ts";

/** Why an address is not a public unicast one. */
export type AddressKind = "loopback" | "private" | "shared" | "link-local" | "unspecified" | "multicast" | "reserved";

/** A host (name or IP literal, IPv6 without brackets) and a port. */
export type Endpoint = { host: string; port: number };

/** What the policy knows: whether internal addresses are allowed, and the store's own addresses (resolved at start). */
export type AddressPolicy = Readonly<{
  allowPrivate: boolean;
  /** The store's own host:port (DATABASE_URL), as IP addresses; empty for the embedded store. */
  store: readonly Endpoint[];
}>;

/** Resolves a host name to every address it has (dns.lookup with all: true, as net.connect resolves). */
export type LookupAll = (host: string) => Promise<string[]>;

/** The variable that lifts the policy, named in every refusal. */
export const ALLOW_PRIVATE_VAR = "CONVEER_PROXY_ALLOW_PRIVATE";

/** Which of the two things is being checked; it chooses the wording of the refusal. */
export type Subject = "proxy host" | "check target";

const KIND_TEXT: Record<AddressKind, string> = {
  loopback: "a loopback address",
  private: "a private address",
  shared: "a shared (carrier-grade NAT) address",
  "link-local": "a link-local address",
  unspecified: "an unspecified address",
  multicast: "a multicast address",
  reserved: "a reserved address",
};

/** How long a resolution may take before it counts as a temporary failure (getaddrinfo cannot be cancelled; it is no longer awaited). */
const LOOKUP_TIMEOUT_MS = 5000;

/** The system resolver, as net.connect uses it (getaddrinfo: /etc/hosts, then DNS), given up after 5 s (EAI_AGAIN). */
export const systemLookup: LookupAll = async (host) => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`resolving ${host} took over ${LOOKUP_TIMEOUT_MS} ms`), { code: "EAI_AGAIN" })), LOOKUP_TIMEOUT_MS);
  });
  try {
    return (await Promise.race([dns.promises.lookup(host, { all: true, verbatim: true }), late])).map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
};

/** The 4 or 16 bytes of an IP literal (an IPv6 zone "%eth0" is ignored); undefined for anything else. */
export function ipBytes(ip: string): number[] | undefined {
  const text = ip.replace(/%.*$/s, "");
  if (net.isIPv4(text)) return text.split(".").map(Number);
  if (!net.isIPv6(text)) return undefined;
  let body = text;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (v4) {
    tail.push(...v4[1].split(".").map(Number));
    body = body.slice(0, -v4[1].length);
    if (body.endsWith(":") && !body.endsWith("::")) body = body.slice(0, -1);
  }
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const [left, right] = body.includes("::") ? body.split("::") : [body, undefined];
  const l = groups(left);
  const r = right === undefined ? [] : groups(right);
  const fill = 8 - tail.length / 2 - l.length - r.length;
  const all = right === undefined ? l : [...l, ...Array<number>(fill).fill(0), ...r];
  return [...all.flatMap((g) => [g >> 8, g & 0xff]), ...tail];
}

/** The IPv4 address an IPv6 one carries (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96), if any. */
function embeddedV4(b: number[]): number[] | undefined {
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return b.slice(12);
  if (zeros(0, 12) && !zeros(12, 16) && !(zeros(12, 15) && b[15] === 1)) return b.slice(12);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return b.slice(12);
  return undefined;
}

function classifyV4([a, b]: number[]): AddressKind | undefined {
  if (a === 0) return "unspecified"; // 0.0.0.0/8: "this network"; 0.0.0.0 reaches the local host on Linux
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return "private";
  if (a === 100 && b >= 64 && b <= 127) return "shared";
  if (a === 169 && b === 254) return "link-local";
  if (a >= 224 && a <= 239) return "multicast";
  if (a >= 240) return "reserved"; // 240.0.0.0/4 and the broadcast address
  return undefined;
}

/** The kind of an IP literal that the policy refuses, or undefined for a public unicast address (or a non-IP). */
export function classifyIp(ip: string): AddressKind | undefined {
  const b = ipBytes(ip);
  if (!b) return undefined;
  if (b.length === 4) return classifyV4(b);
  const v4 = embeddedV4(b);
  if (v4) return classifyV4(v4);
  if (b.every((x) => x === 0)) return "unspecified";
  if (b.slice(0, 15).every((x) => x === 0) && b[15] === 1) return "loopback";
  if ((b[0] & 0xfe) === 0xfc) return "private"; // fc00::/7 unique local
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return "link-local"; // fe80::/10
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0xc0) return "private"; // fec0::/10 site-local (deprecated)
  if (b[0] === 0xff) return "multicast";
  return undefined;
}

/** One spelling per address (IPv4-mapped IPv6 as dotted IPv4, IPv6 as 8 hex groups), so two forms of one address compare equal. */
export function canonicalIp(ip: string): string {
  const b = ipBytes(ip);
  if (!b) return ip.toLowerCase();
  const v4 = b.length === 4 ? b : b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff ? b.slice(12) : undefined;
  if (v4) return v4.join(".");
  return Array.from({ length: 8 }, (_, i) => ((b[2 * i] << 8) | b[2 * i + 1]).toString(16)).join(":");
}

/** "host:port", IPv6 in brackets. */
export function formatEndpoint(e: Endpoint): string {
  return net.isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** Splits "host:port" (IPv6 in brackets) into an Endpoint; undefined when it is not that shape. */
export function parseEndpoint(text: string): Endpoint | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\s\x00-\x1f\x7f/@[\]]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return undefined;
  return { host: m[1].replace(/^\[|\]$/g, "").toLowerCase(), port: Number(m[2]) };
}

/** True for names that always mean this host (RFC 6761): "localhost" and "*.localhost". */
export function isLocalhostName(host: string): boolean {
  return /^(.+\.)?localhost\.?$/i.test(host);
}

/**
 * Why the policy refuses `endpoint`, given the addresses its host resolved to (an IP literal's own
 * address); "" when every one passes. Pure: the caller resolves.
 */
export function refusal(policy: AddressPolicy, subject: Subject, endpoint: Endpoint, addresses: readonly string[]): string {
  if (policy.allowPrivate) return "";
  const literal = net.isIP(endpoint.host) !== 0;
  const name = subject === "proxy host" ? `proxy host ${endpoint.host}` : `check target ${formatEndpoint(endpoint)}`;
  const hint = subject === "proxy host" ? "to allow local proxies" : "to allow internal check targets";
  if (!literal && isLocalhostName(endpoint.host)) return `${name} is ${KIND_TEXT.loopback}; set ${ALLOW_PRIVATE_VAR}=true ${hint}`;
  for (const address of addresses) {
    const kind = classifyIp(address);
    const via = literal ? "" : ` resolves to ${address}, which`;
    if (kind) return `${name}${via} is ${KIND_TEXT[kind]}; set ${ALLOW_PRIVATE_VAR}=true ${hint}`;
    const ip = canonicalIp(address);
    if (policy.store.some((s) => s.port === endpoint.port && canonicalIp(s.host) === ip)) {
      const where = formatEndpoint(endpoint);
      return `${subject === "proxy host" ? `proxy ${where}` : `check target ${where}`}${literal ? "" : ` (${address})`} is the store's own address (DATABASE_URL); set ${ALLOW_PRIVATE_VAR}=true to allow it`;
    }
  }
  return "";
}

/**
 * Checks an endpoint against the policy, resolving a host name first (every address must pass).
 * Throws INVALID_ARGUMENT naming the setting that allows it; a name that does not resolve is
 * INVALID_ARGUMENT (ENOTFOUND) or UNAVAILABLE (a temporary resolver failure, retry later).
 * With the policy lifted nothing is resolved.
 */
export async function checkEndpoint(policy: AddressPolicy, subject: Subject, endpoint: Endpoint, lookup: LookupAll = systemLookup): Promise<void> {
  if (policy.allowPrivate) return;
  let addresses = [endpoint.host];
  if (net.isIP(endpoint.host) === 0 && !isLocalhostName(endpoint.host)) {
    try {
      addresses = await lookup(endpoint.host);
    } catch (err) {
      const code = (err as { code?: unknown })?.code;
      const temporary = code === "EAI_AGAIN";
      throw new AppError(
        temporary ? "UNAVAILABLE" : "INVALID_ARGUMENT",
        `${subject} ${endpoint.host} could not be resolved${typeof code === "string" ? ` (${code})` : ""}; ${temporary ? "retry later" : "check the name"} (it must resolve to check it against the proxy address policy)`,
        { cause: err },
      );
    }
    if (addresses.length === 0) throw new AppError("INVALID_ARGUMENT", `${subject} ${endpoint.host} resolves to no address`);
  }
  const why = refusal(policy, subject, endpoint, addresses);
  if (why) throw new AppError("INVALID_ARGUMENT", why);
}

/**
 * A refusal check for one address at dial time (DNS rebinding: a name that resolved to a public
 * address when added may resolve to an internal one later); "" when allowed. For DialOptions.refuseAddress.
 */
export function dialGuard(policy: AddressPolicy, endpoint: Endpoint): ((address: string) => string) | undefined {
  if (policy.allowPrivate) return undefined;
  return (address) => refusal(policy, "proxy host", endpoint, [address]);
}

/** The store's own TCP endpoints from DATABASE_URL, resolved (default port 5432); [] for the embedded store or a Unix socket. */
export async function storeEndpoints(databaseUrl: string, lookup: LookupAll = systemLookup): Promise<Endpoint[]> {
  if (!databaseUrl) return [];
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    return [];
  }
  const host = url.hostname.replace(/^\[|\]$/g, "") || "localhost";
  if (host.startsWith("/") || url.searchParams.get("host")?.startsWith("/")) return [];
  const port = Number(url.port || 5432);
  if (net.isIP(host)) return [{ host, port }];
  const addresses = await lookup(host).catch(() => [] as string[]);
  return addresses.map((a) => ({ host: a, port }));
}

/** Which platforms are bound to which driver (config.platforms.drivers). */
export type DriverBindings = Readonly<Partial<Record<string, string>>>;

/**
 * The default health-check target: the sandbox's own address when every configured platform driver
 * is the sandbox and its URL is known (so a healthy local proxy stays healthy on an offline machine),
 * otherwise example.com:80.
 */
export function defaultCheckTarget(drivers: DriverBindings, sandboxUrl: string): string {
  const sandbox = sandboxEndpoint(sandboxUrl);
  const allSandbox = Object.values(drivers).every((d) => d === "sandbox");
  return allSandbox && sandbox ? formatEndpoint(sandbox) : "example.com:80";
}

/** host:port of the sandbox's URL ("http://127.0.0.1:8090" → 127.0.0.1:8090), undefined when there is none. */
export function sandboxEndpoint(sandboxUrl: string): Endpoint | undefined {
  if (!sandboxUrl) return undefined;
  try {
    const u = new URL(sandboxUrl);
    return { host: u.hostname.replace(/^\[|\]$/g, "").toLowerCase(), port: Number(u.port || (u.protocol === "https:" ? 443 : 80)) };
  } catch {
    return undefined;
  }
}

/** What the proxy pool is given at start: the policy, the default check target, and every target CheckHealth may name. */
export type ProxyTargets = Readonly<{ policy: AddressPolicy; checkTarget: string; allowedTargets: readonly string[] }>;

/** Settings read from the environment (config.proxy), plus what is known only at start. */
export type ProxyTargetSettings = {
  allowPrivate: boolean;
  /** CONVEER_PROXY_CHECK_TARGET; "" for the default. */
  checkTarget: string;
  /** CONVEER_PROXY_CHECK_TARGETS. */
  checkTargets: readonly string[];
  databaseUrl: string;
  drivers: DriverBindings;
  /** The sandbox's URL (in-process or CONVEER_SANDBOX_URL); "" when none. */
  sandboxUrl: string;
};

/**
 * Builds the policy and the check-target list at start: resolves the store's address, picks the
 * default check target, and refuses (an Error naming the variable) a configured target the policy
 * refuses. The sandbox's own address is always allowed. A configured name that does not resolve is
 * let through (an offline machine must still start; the proxy resolves the target, not Conveer).
 */
export async function resolveProxyTargets(s: ProxyTargetSettings, lookup: LookupAll = systemLookup): Promise<ProxyTargets> {
  const policy: AddressPolicy = Object.freeze({ allowPrivate: s.allowPrivate, store: Object.freeze(await storeEndpoints(s.databaseUrl, lookup)) });
  const sandbox = sandboxEndpoint(s.sandboxUrl);
  const sandboxKey = sandbox ? endpointKey(sandbox) : "";
  const checkTarget = s.checkTarget || defaultCheckTarget(s.drivers, s.sandboxUrl);
  const configured: [string, string][] = [
    ...(s.checkTarget ? [["CONVEER_PROXY_CHECK_TARGET", s.checkTarget] as [string, string]] : []),
    ...s.checkTargets.map((t) => ["CONVEER_PROXY_CHECK_TARGETS", t] as [string, string]),
  ];
  for (const [variable, text] of configured) {
    const e = parseEndpoint(text);
    if (!e) throw new Error(`${variable} must be host:port, got ${JSON.stringify(text)}`);
    if (endpointKey(e) === sandboxKey) continue;
    try {
      await checkEndpoint(policy, "check target", e, lookup);
    } catch (err) {
      if (err instanceof AppError && err.code === "INVALID_ARGUMENT" && !/could not be resolved|resolves to no address/.test(err.message)) {
        throw new Error(`${variable}: ${err.message}`, { cause: err });
      }
    }
  }
  const allowed = [checkTarget, ...s.checkTargets, ...(sandbox ? [formatEndpoint(sandbox)] : [])];
  return Object.freeze({ policy, checkTarget, allowedTargets: Object.freeze([...new Map(allowed.map((t) => [endpointKey(parseEndpoint(t)!), t])).values()]) });
}

/** A comparable key for "host:port" (host lower-cased, IP literals canonical). */
export function endpointKey(e: Endpoint): string {
  const host = net.isIP(e.host) ? canonicalIp(e.host) : e.host.toLowerCase().replace(/\.$/, "");
  return `${host}|${e.port}`;
}
