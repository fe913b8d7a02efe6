import { test } from "node:test";
import assert from "node:assert/strict";
import { AppError } from "../errors.ts";
import { canonicalIp, checkEndpoint, classifyIp, defaultCheckTarget, ipBytes, refusal, resolveProxyTargets, storeEndpoints } from "./address-policy.ts";
import type { AddressPolicy, LookupAll } from "./address-policy.ts";

const strict: AddressPolicy = { allowPrivate: false, store: [] };
const open: AddressPolicy = { allowPrivate: true, store: [] };
/** A resolver from a table; unknown names fail like getaddrinfo (ENOTFOUND). */
const table =
  (t: Record<string, string[]>): LookupAll =>
  async (host) => {
    if (t[host]) return t[host];
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  };

test("classifyIp: every refused range, in IPv4, IPv6 and the IPv6 forms that carry an IPv4 address", () => {
  const cases: [string, string | undefined][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["fc00::1", "private"],
    ["fd12:3456::1", "private"],
    ["fec0::1", "private"],
    ["100.64.0.1", "shared"],
    ["100.127.255.255", "shared"],
    ["169.254.169.254", "link-local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["febf::1", "link-local"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["::", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["ff02::1", "multicast"],
    ["255.255.255.255", "reserved"],
    ["240.0.0.1", "reserved"],
    // IPv4-mapped, IPv4-compatible and NAT64 forms are judged by the IPv4 address inside.
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["0:0:0:0:0:ffff:a00:1", "private"],
    ["::ffff:169.254.169.254", "link-local"],
    ["::ffff:0.0.0.0", "unspecified"],
    ["::127.0.0.1", "loopback"],
    ["64:ff9b::10.1.2.3", "private"],
    ["64:ff9b::7f00:1", "loopback"],
    // Public unicast (documentation ranges included: they are not internal).
    ["8.8.8.8", undefined],
    ["203.0.113.5", undefined],
    ["172.32.0.1", undefined],
    ["172.15.255.255", undefined],
    ["100.63.255.255", undefined],
    ["100.128.0.1", undefined],
    ["169.253.0.1", undefined],
    ["2001:db8::1", undefined],
    ["2606:4700::1111", undefined],
    ["::ffff:8.8.8.8", undefined],
    ["64:ff9b::8.8.8.8", undefined],
    ["fbff::1", undefined],
    ["fe7f::1", undefined],
    ["example.com", undefined],
  ];
  for (const [ip, kind] of cases) assert.equal(classifyIp(ip), kind, ip);
});

test("ipBytes and canonicalIp: one spelling per address", () => {
  assert.deepEqual(ipBytes("::ffff:1.2.3.4"), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
  assert.deepEqual(ipBytes("1::"), [0, 1, ...Array(14).fill(0)]);
  assert.equal(ipBytes("nope"), undefined);
  assert.equal(canonicalIp("::ffff:203.0.113.9"), "203.0.113.9");
  assert.equal(canonicalIp("::FFFF:cb00:7109"), "203.0.113.9");
  assert.equal(canonicalIp("2001:DB8:0::1"), canonicalIp("2001:db8::0:1"));
});

test("refusal names the address, its kind and the setting; the setting lifts it", () => {
  assert.equal(
    refusal(strict, "proxy host", { host: "127.0.0.1", port: 5432 }, ["127.0.0.1"]),
    "proxy host 127.0.0.1 is a loopback address; set CONVEER_PROXY_ALLOW_PRIVATE=true to allow local proxies",
  );
  assert.equal(
    refusal(strict, "proxy host", { host: "proxy.example", port: 1080 }, ["203.0.113.5", "10.0.0.7"]),
    "proxy host proxy.example resolves to 10.0.0.7, which is a private address; set CONVEER_PROXY_ALLOW_PRIVATE=true to allow local proxies",
  );
  assert.equal(
    refusal(strict, "check target", { host: "169.254.169.254", port: 80 }, ["169.254.169.254"]),
    "check target 169.254.169.254:80 is a link-local address; set CONVEER_PROXY_ALLOW_PRIVATE=true to allow internal check targets",
  );
  assert.match(refusal(strict, "proxy host", { host: "db.localhost", port: 1 }, []), /db\.localhost is a loopback address/);
  assert.equal(refusal(strict, "proxy host", { host: "203.0.113.5", port: 1080 }, ["203.0.113.5"]), "");
  assert.equal(refusal(open, "proxy host", { host: "127.0.0.1", port: 5432 }, ["127.0.0.1"]), "");
});

test("the store's own host:port is refused even on a public address, in any spelling; its other ports are not", () => {
  const policy: AddressPolicy = { allowPrivate: false, store: [{ host: "203.0.113.50", port: 5432 }] };
  assert.match(refusal(policy, "proxy host", { host: "203.0.113.50", port: 5432 }, ["203.0.113.50"]), /^proxy 203\.0\.113\.50:5432 is the store's own address \(DATABASE_URL\); set CONVEER_PROXY_ALLOW_PRIVATE=true/);
  assert.match(refusal(policy, "proxy host", { host: "::ffff:203.0.113.50", port: 5432 }, ["::ffff:203.0.113.50"]), /store's own address/);
  assert.match(refusal(policy, "check target", { host: "db.example", port: 5432 }, ["203.0.113.50"]), /^check target db\.example:5432 \(203\.0\.113\.50\) is the store's own address/);
  assert.equal(refusal(policy, "proxy host", { host: "203.0.113.50", port: 1080 }, ["203.0.113.50"]), "");
});

test("storeEndpoints: DATABASE_URL's host:port, resolved; none for the embedded store or a Unix socket", async () => {
  const lookup = table({ "db.example": ["203.0.113.50", "2001:db8::50"] });
  assert.deepEqual(await storeEndpoints("", lookup), []);
  assert.deepEqual(await storeEndpoints("postgres://u@127.0.0.1/x", lookup), [{ host: "127.0.0.1", port: 5432 }]);
  assert.deepEqual(await storeEndpoints("postgres://u@[::1]:6543/x", lookup), [{ host: "::1", port: 6543 }]);
  assert.deepEqual(await storeEndpoints("postgresql://u:p@db.example:5433/x", lookup), [
    { host: "203.0.113.50", port: 5433 },
    { host: "2001:db8::50", port: 5433 },
  ]);
  assert.deepEqual(await storeEndpoints("postgres://u@/x?host=/var/run/postgresql", lookup), []);
  assert.deepEqual(await storeEndpoints("postgres://u@gone.example/x", lookup), []);
});

test("checkEndpoint resolves names and checks every address; unresolvable names are refused; the setting skips resolving", async () => {
  const lookup = table({ "rebind.example": ["203.0.113.5", "127.0.0.1"], "good.example": ["203.0.113.5"], "0x7f.1": ["127.0.0.1"] });
  const code = (e: unknown) => (e as AppError).code;
  await assert.rejects(checkEndpoint(strict, "proxy host", { host: "rebind.example", port: 80 }, lookup), (e) => code(e) === "INVALID_ARGUMENT" && /resolves to 127\.0\.0\.1, which is a loopback address; set CONVEER_PROXY_ALLOW_PRIVATE=true/.test((e as Error).message));
  await assert.rejects(checkEndpoint(strict, "proxy host", { host: "0x7f.1", port: 80 }, lookup), /loopback/);
  await assert.rejects(checkEndpoint(strict, "proxy host", { host: "[::ffff:127.0.0.1]".slice(1, -1), port: 80 }, lookup), /::ffff:127\.0\.0\.1 is a loopback address/);
  await assert.rejects(checkEndpoint(strict, "proxy host", { host: "missing.example", port: 80 }, lookup), (e) => code(e) === "INVALID_ARGUMENT" && /could not be resolved \(ENOTFOUND\)/.test((e as Error).message));
  const flaky: LookupAll = async () => {
    throw Object.assign(new Error("try again"), { code: "EAI_AGAIN" });
  };
  await assert.rejects(checkEndpoint(strict, "proxy host", { host: "good.example", port: 80 }, flaky), (e) => code(e) === "UNAVAILABLE" && /retry later/.test((e as Error).message));
  await checkEndpoint(strict, "proxy host", { host: "good.example", port: 80 }, lookup);
  let asked = 0;
  await checkEndpoint(open, "proxy host", { host: "rebind.example", port: 80 }, async () => (asked++, ["127.0.0.1"]));
  assert.equal(asked, 0);
});

test("defaultCheckTarget follows the sandbox when every platform driver is the sandbox and its address is known", () => {
  const all = { vk: "sandbox", telegram: "sandbox", mail: "sandbox", max: "sandbox" };
  assert.equal(defaultCheckTarget(all, "http://127.0.0.1:43121"), "127.0.0.1:43121");
  assert.equal(defaultCheckTarget({ vk: "sandbox" }, "http://[::1]:8090"), "[::1]:8090");
  assert.equal(defaultCheckTarget(all, ""), "example.com:80");
  assert.equal(defaultCheckTarget({ ...all, vk: "other" }, "http://127.0.0.1:43121"), "example.com:80");
});

test("resolveProxyTargets: a configured target the policy refuses stops start-up naming the variable; the sandbox's address is always allowed", async () => {
  const base = { allowPrivate: false, checkTarget: "", checkTargets: [], databaseUrl: "", drivers: { vk: "sandbox" }, sandboxUrl: "http://127.0.0.1:8090" };
  const lookup = table({ "db.internal": ["10.0.0.5"], "example.com": ["203.0.113.80"] });
  const t = await resolveProxyTargets(base, lookup);
  assert.equal(t.checkTarget, "127.0.0.1:8090");
  assert.deepEqual(t.allowedTargets, ["127.0.0.1:8090"]);
  await assert.rejects(resolveProxyTargets({ ...base, checkTarget: "127.0.0.1:5432" }, lookup), /^Error: CONVEER_PROXY_CHECK_TARGET: check target 127\.0\.0\.1:5432 is a loopback address; set CONVEER_PROXY_ALLOW_PRIVATE=true/);
  await assert.rejects(resolveProxyTargets({ ...base, checkTarget: "db.internal:5432" }, lookup), /CONVEER_PROXY_CHECK_TARGET: check target db\.internal:5432 resolves to 10\.0\.0\.5/);
  await assert.rejects(resolveProxyTargets({ ...base, checkTargets: ["example.com:80", "[::ffff:169.254.169.254]:80"] }, lookup), /CONVEER_PROXY_CHECK_TARGETS: .*link-local/);
  // The store's own address, public or not.
  await assert.rejects(
    resolveProxyTargets({ ...base, databaseUrl: "postgres://u@db.public:5432/x", checkTarget: "db.public:5432" }, table({ "db.public": ["203.0.113.50"] })),
    /CONVEER_PROXY_CHECK_TARGET: check target db\.public:5432 \(203\.0\.113\.50\) is the store's own address/,
  );
  // The sandbox's own address passes without the setting; so does everything with it; an unresolvable name does not stop start-up.
  assert.equal((await resolveProxyTargets({ ...base, checkTarget: "127.0.0.1:8090" }, lookup)).checkTarget, "127.0.0.1:8090");
  const lifted = await resolveProxyTargets({ ...base, allowPrivate: true, checkTarget: "127.0.0.1:5432", checkTargets: ["10.0.0.1:80"] }, lookup);
  assert.deepEqual(lifted.allowedTargets, ["127.0.0.1:5432", "10.0.0.1:80", "127.0.0.1:8090"]);
  assert.deepEqual((await resolveProxyTargets({ ...base, sandboxUrl: "", checkTargets: ["offline.example:80"] }, lookup)).allowedTargets, ["example.com:80", "offline.example:80"]);
});
