import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ProxySpecSchema } from "../gen/conveer/v1/proxy_pb.js";
import { checkCountry, checkSpec, checkText, parseSpecUrl } from "./proxy-fields.ts";

const spec = (url: string, extra: Partial<{ country: string; provider: string; tags: string[]; capacity: number }> = {}) => create(ProxySpecSchema, { url, ...extra });
const checked = (url: string, extra: Parameters<typeof spec>[1] = {}) => {
  const s = spec(url, extra);
  return checkSpec(3, s, parseSpecUrl(3, s));
};

test("text fields are bounded and free of control characters; countries are upper-cased alpha-2 codes", () => {
  assert.equal(checkText("provider", "acme", 8), "acme");
  assert.throws(() => checkText("provider", "x".repeat(9), 8), /provider must be at most 8 characters, got 9/);
  assert.throws(() => checkText("provider", "a\u0000b", 8), /provider must not contain control characters/);
  assert.equal(checkCountry("country", " ru "), "RU");
  assert.equal(checkCountry("country", ""), "");
  assert.throws(() => checkCountry("country", "RUS"), /country must be an ISO 3166 alpha-2 code like RU, got "RUS"/);
});

test("an AddProxies item is normalized: tags trimmed and deduplicated, capacity 0 means 1", () => {
  const item = checked("socks5://u:p@proxy.example:1080", { country: "de", provider: " acme ", tags: [" a ", "a", "", "b"] });
  assert.deepEqual(item, { protocol: "socks5", host: "proxy.example", port: 1080, username: "u", password: "p", country: "DE", provider: "acme", tags: ["a", "b"], capacity: 1 });
});

test("an AddProxies item's errors name the item's field", () => {
  assert.throws(() => parseSpecUrl(3, spec("ftp://x:1")), /proxies\[3\]\.url/);
  assert.throws(() => checked("http://a%3Ab:p@proxy.example:8080"), /proxies\[3\]\.url.*must not contain ":"/);
  assert.throws(() => checked(`socks5://${"u".repeat(256)}:p@proxy.example:1080`), /proxies\[3\]\.url.*at most 255 bytes/);
  assert.throws(() => checked("http://proxy.example:8080", { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }), /proxies\[3\]\.tags must hold at most 32 tags, got 33/);
  assert.throws(() => checked("http://proxy.example:8080", { capacity: 10_001 }), /proxies\[3\]\.capacity must be between 1 and 10000/);
  assert.throws(() => checked("http://proxy.example:8080", { tags: ["x".repeat(65)] }), /proxies\[3\]\.tags\[0\] must be at most 64 characters/);
});
