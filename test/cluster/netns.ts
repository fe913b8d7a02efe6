/**
 * A small network made of Linux network namespaces: a bridge in the test's own namespace (the
 * "switch", where the test's PostgreSQL, sandbox and proxies listen) and one namespace per host,
 * joined to the bridge by a veth pair. Taking a host's veth down cuts that host from everything
 * (the database included) without touching its processes. Needs root and iproute2.
 */
import { execFileSync } from "node:child_process";

/** The network: the bridge's address (the test's side) and each host's namespace and address. */
export type Net = {
  /** The bridge's address: the database, the sandbox and the proxies listen here. */
  gateway: string;
  hosts: { ns: string; addr: string; link: string }[];
  /** Cuts host i from the network (its link goes down) or heals it. */
  setLink(i: number, up: boolean): void;
  destroy(): void;
};

/** Why these tests cannot run here, or false when they can. */
export function netnsUnavailable(): string | false {
  if (process.getuid?.() !== 0) return "needs root (ip netns, veth, bridge): run as root, as CI does";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "needs iproute2's ip (apt-get install iproute2)";
  }
  return false;
}

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Builds the bridge and `n` host namespaces, named after this process so parallel runs do not meet. */
export function createNet(n: number): Net {
  const tag = `cv${process.pid % 100000}`;
  // 10.X.Y.0/24 from the pid: two runs at once get different subnets.
  const subnet = `10.${200 + ((process.pid >> 8) % 50)}.${process.pid % 250}`;
  const bridge = `${tag}br`;
  const hosts = Array.from({ length: n }, (_, i) => ({ ns: `${tag}h${i + 1}`, addr: `${subnet}.${11 + i}`, link: `${tag}v${i + 1}` }));
  const net: Net = {
    gateway: `${subnet}.1`,
    hosts,
    setLink(i, up) {
      ip("link", "set", hosts[i].link, up ? "up" : "down");
    },
    destroy() {
      for (const h of hosts) {
        try {
          ip("netns", "del", h.ns);
        } catch {}
        try {
          ip("link", "del", h.link);
        } catch {}
      }
      try {
        ip("link", "del", bridge);
      } catch {}
    },
  };
  try {
    ip("link", "add", bridge, "type", "bridge");
    ip("addr", "add", `${net.gateway}/24`, "dev", bridge);
    ip("link", "set", bridge, "up");
    for (const h of hosts) {
      ip("netns", "add", h.ns);
      ip("link", "add", h.link, "type", "veth", "peer", "name", `${h.link}p`);
      ip("link", "set", `${h.link}p`, "netns", h.ns);
      ip("-n", h.ns, "link", "set", `${h.link}p`, "name", "eth0");
      ip("-n", h.ns, "addr", "add", `${h.addr}/24`, "dev", "eth0");
      ip("-n", h.ns, "link", "set", "eth0", "up");
      ip("-n", h.ns, "link", "set", "lo", "up");
      ip("link", "set", h.link, "master", bridge);
      ip("link", "set", h.link, "up");
    }
  } catch (err) {
    net.destroy();
    throw err;
  }
  return net;
}
