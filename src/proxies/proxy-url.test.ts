import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatProxyUrl, parseProxyUrl, readProxyImportFile } from "./proxy-url.ts";
import type { ProxyImportLine } from "./proxy-url.ts";

test("parseProxyUrl: the accepted forms", () => {
  assert.deepEqual(parseProxyUrl("socks5://user:pass@host.example:1080"), { protocol: "socks5", host: "host.example", port: 1080, username: "user", password: "pass" });
  assert.deepEqual(parseProxyUrl("http://10.0.0.1:3128"), { protocol: "http", host: "10.0.0.1", port: 3128, username: "", password: "" });
  assert.deepEqual(parseProxyUrl("  HTTPS://Proxy.Example:443/ "), { protocol: "https", host: "proxy.example", port: 443, username: "", password: "" });
  assert.equal(parseProxyUrl("socks5h://h:1").protocol, "socks5");
  assert.deepEqual(parseProxyUrl("socks5://[2001:DB8::1]:1080"), { protocol: "socks5", host: "2001:db8::1", port: 1080, username: "", password: "" });
  assert.deepEqual(parseProxyUrl("http://u%40x:p%3Aa%25ss@h:8080"), { protocol: "http", host: "h", port: 8080, username: "u@x", password: "p:a%ss" });
  assert.equal(parseProxyUrl("http://u:p@ss@h:1").password, "p@ss");
  assert.deepEqual(parseProxyUrl("http://onlyuser@h:1"), { protocol: "http", host: "h", port: 1, username: "onlyuser", password: "" });
  assert.equal(parseProxyUrl("http://h:65535").port, 65535);
});

test("parseProxyUrl: errors name the problem and the accepted form", () => {
  const cases: [string, RegExp][] = [
    ["", /is empty/],
    ["host:1080", /has no scheme/],
    ["socks4://h:1080", /unsupported scheme "socks4"/],
    ["http://h", /has no port/],
    ["http://h:", /has no port/],
    ["http://h:0", /invalid port "0"; use 1-65535/],
    ["http://h:65536", /invalid port "65536"/],
    ["http://h:80a", /invalid port "80a"/],
    ["http://:1", /has no host/],
    ["http://h_!:1", /invalid host "h_!"/],
    ["http://999.1.1.1:1", /invalid host/],
    ["http://2001:db8::1:80", /IPv6 host without brackets/],
    ["http://[2001:db8::1:80", /without its closing "\]"/],
    ["http://[nothex]:80", /invalid IPv6 address/],
    ["http://[::1]x:80", /characters after the IPv6 host/],
    ["http://[::1]", /has no port/],
    ["http://h:1/path", /has a path/],
    ["http://:pw@h:1", /empty username/],
    ["http://u:%zz@h:1", /malformed percent-escape in the password/],
  ];
  for (const [url, re] of cases) {
    assert.throws(
      () => parseProxyUrl(url),
      (err: Error) => {
        assert.match(err.message, re, url);
        assert.match(err.message, /expected scheme:\/\/\[user:pass@\]host:port with scheme http, https or socks5/, url);
        return true;
      },
      url,
    );
  }
});

test("parseProxyUrl: a password never appears in an error", () => {
  assert.throws(
    () => parseProxyUrl("socks5://user:s3cr3t@h"),
    (err: Error) => !err.message.includes("s3cr3t") && err.message.includes('"socks5://user:***@h"'),
  );
  assert.throws(() => parseProxyUrl("socks5://user:s3@cr3t@h:99999"), (err: Error) => !err.message.includes("s3") && !err.message.includes("cr3t"));
  // Without a scheme too: "user:pass@host:port", a vendor's "host:port:user:pass", a scheme missing its colon.
  for (const [url, shown] of [
    ["user:s3cr3t@203.0.113.5:3128", '"user:***@203.0.113.5:3128"'],
    ["203.0.113.5:3128:user:s3cr3t", '"203.0.113.5:3128:***"'],
    ["203.0.113.5:3128:me@mail.example:s3cr3t", '"203.0.113.5:3128:***"'],
    ["203.0.113.5:3128:user:p@s3cr3t", '"203.0.113.5:3128:***"'],
    ["http//user:s3cr3t@203.0.113.5:3128", '"http//user:***@203.0.113.5:3128"'],
  ]) {
    assert.throws(
      () => parseProxyUrl(url),
      (err: Error) => !err.message.includes("s3cr3t") && err.message.includes(shown) && err.message.includes("has no scheme"),
      url,
    );
  }
  assert.throws(() => parseProxyUrl("203.0.113.5:3128:user:s3cr3t"), /written http:\/\/user:pass@host:port/);
  // With a scheme: the same vendor line behind socks5://, a numeric password, an IPv6 host with a path.
  for (const [url, shown] of [
    ["socks5://203.0.113.5:1080:user:s3cr3t", '"socks5://203.0.113.5:1080:***"'],
    ["socks5://user:123456@h:99999", '"socks5://user:***@h:99999"'],
    ["http://[2001:db8::1]:3128/s3cr3t", '"http://[2001:db8::1]:3128/***"'],
  ]) {
    assert.throws(() => parseProxyUrl(url), (err: Error) => !err.message.includes("s3cr3t") && !err.message.includes("123456") && err.message.includes(shown), url);
  }
});

test("formatProxyUrl round-trips through parseProxyUrl", () => {
  for (const url of ["socks5://u%40x:p%3A%2F@h:1080", "http://[::1]:3128", "https://proxy.example:443", "http://u@1.2.3.4:80"]) {
    const p = parseProxyUrl(url);
    assert.deepEqual(parseProxyUrl(formatProxyUrl(p)), p);
  }
  assert.equal(formatProxyUrl(parseProxyUrl("socks5h://u:p@H:1")), "socks5://u:p@h:1");
});

async function withFile(t: { after: (fn: () => Promise<void>) => void }, name: string, content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "conveer-proxies-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function collect(path: string): Promise<ProxyImportLine[]> {
  const out: ProxyImportLine[] = [];
  for await (const p of readProxyImportFile(path)) out.push(p);
  return out;
}

const summary = (ps: ProxyImportLine[]) => ps.map((p) => (p.item ? `${p.line}:${p.item.url}` : `${p.line}:err`));

test("import: bare URLs, one per line, with comments and blanks", async (t) => {
  const path = await withFile(t, "list.txt", "# pool A\nsocks5h://u:p@1.2.3.4:1080\n\nhttp://h\r\nhttp://h2:8080\n");
  const got = await collect(path);
  assert.deepEqual(summary(got), ["2:socks5://u:p@1.2.3.4:1080", "4:err", "5:http://h2:8080"]);
  assert.deepEqual(got[0].item, { url: "socks5://u:p@1.2.3.4:1080", country: "", provider: "", tags: [], capacity: 0 });
  assert.match(got[1].error!, /^line 4: url "http:\/\/h" has no port/);
});

test("import: CSV with header, tags split on ';', bad lines mixed in", async (t) => {
  const path = await withFile(
    t,
    "p.csv",
    [
      "url,country,provider,tags,capacity", // 1
      "socks5://u:p@1.2.3.4:1080,ru,acme,mobile; ru ;;mobile,2", // 2
      "http://h:1,,,,", // 3
      "http://h:1,Russia,acme,,x", // 4 bad country and capacity
      "http://h:1,RU,acme", // 5 too few fields
      "ftp://h:1,RU,acme,,", // 6 bad scheme
      '"http://h:2",DE,"big, inc",a,10000', // 7 quoted fields
    ].join("\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["2:socks5://u:p@1.2.3.4:1080", "3:http://h:1", "4:err", "5:err", "6:err", "7:http://h:2"]);
  assert.deepEqual(got[0].item, { url: "socks5://u:p@1.2.3.4:1080", country: "RU", provider: "acme", tags: ["mobile", "ru"], capacity: 2 });
  assert.deepEqual(got[5].item, { url: "http://h:2", country: "DE", provider: "big, inc", tags: ["a"], capacity: 10000 });
  assert.match(got[2].error!, /^line 4: country "Russia" is not an ISO 3166 alpha-2 code.*; capacity "x" is not a whole number from 0 to 10000/);
  assert.match(got[3].error!, /^line 5: has 3 fields but the header has 5 columns/);
  assert.match(got[4].error!, /^line 6: url "ftp:\/\/h:1" has unsupported scheme/);
});

test("import: CSV tags inside a quoted cell may be separated by ',' as well as ';'", async (t) => {
  const path = await withFile(t, "q.csv", ['url,country,provider,tags,capacity', 'http://h:3,,,"mobile, ru;fast",1'].join("\n"));
  assert.deepEqual((await collect(path))[0].item?.tags, ["mobile", "ru", "fast"]);
});

test("import: CSV header in another order or with only url; bad header is one error", async (t) => {
  const reordered = await withFile(t, "a.csv", "capacity,url\n3,http://h:1\n");
  assert.deepEqual((await collect(reordered))[0].item, { url: "http://h:1", country: "", provider: "", tags: [], capacity: 3 });
  // A .txt whose first line is a header is read as CSV.
  const sniffed = await withFile(t, "b.txt", "url,country\nhttp://h:1,NL\n");
  assert.deepEqual((await collect(sniffed))[0].item?.country, "NL");
  const bad = await withFile(t, "c.csv", "url,colour\nhttp://h:1,red\n");
  const got = await collect(bad);
  assert.equal(got.length, 1);
  assert.match(got[0].error!, /^line 1: unknown column "colour"; the first line must be a header such as url,country,provider,tags,capacity/);
});

test("import: JSONL with good and bad lines", async (t) => {
  const path = await withFile(
    t,
    "p.jsonl",
    [
      JSON.stringify({ url: "http://[::1]:3128", country: "us", provider: "acme", tags: ["dc", "us"], capacity: 4 }), // 1
      "{broken", // 2
      JSON.stringify({ url: "http://h:1", speed: 9 }), // 3 unknown field
      JSON.stringify({ url: 5 }), // 4 wrong type
      JSON.stringify({ url: "http://h:1", capacity: -1, tags: [1] }), // 5
      JSON.stringify({ country: "RU" }), // 6 no url
      JSON.stringify({ url: "http://h:9", tags: "a;b" }), // 7
    ].join("\n"),
  );
  const got = await collect(path);
  assert.deepEqual(summary(got), ["1:http://[::1]:3128", "2:err", "3:err", "4:err", "5:err", "6:err", "7:http://h:9"]);
  assert.deepEqual(got[0].item, { url: "http://[::1]:3128", country: "US", provider: "acme", tags: ["dc", "us"], capacity: 4 });
  assert.deepEqual(got[6].item?.tags, ["a", "b"]);
  assert.match(got[1].error!, /^line 2: not valid JSON/);
  assert.match(got[2].error!, /^line 3: unknown field "speed"; the fields are url, country, provider, tags, capacity/);
  assert.match(got[3].error!, /^line 4: url must be a string, got number/);
  assert.match(got[4].error!, /^line 5: tags must be a list of strings.*; capacity -1 is not a whole number/);
  assert.match(got[5].error!, /^line 6: url is missing/);
});

test("import: a first line starting with { is read as JSONL whatever the extension", async (t) => {
  const path = await withFile(t, "p.txt", JSON.stringify({ url: "http://h:1" }) + "\n");
  assert.deepEqual(summary(await collect(path)), ["1:http://h:1"]);
});
