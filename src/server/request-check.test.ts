import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { ScalarType, create } from "@bufbuild/protobuf";
import type { DescField, DescMessage, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { OPEN_PRINCIPAL } from "../auth/tokens.ts";
import { AccountService, CreateAccountRequestSchema, ImportAccountsRequestSchema, ListAccountsRequestSchema, UpdateCredentialsRequestSchema } from "../gen/conveer/v1/account_pb.js";
import { GetStatisticsRequestSchema } from "../gen/conveer/v1/warming_pb.js";
import { AppError } from "../errors.ts";
import { localClient } from "./local-client.ts";
import type { ServiceBinding } from "./service-binding.ts";
import { DURATION_MAX_SECONDS, MAX_STRING_CHARS, STRING_LIMITS, TIMESTAMP_SECONDS, checkRequest, timeProblem } from "./request-check.ts";

/** The message the check throws for `init` of `schema`, or undefined when it passes. */
function problem(schema: DescMessage, init: Record<string, unknown>): string | undefined {
  try {
    checkRequest(schema, create(schema, init as never));
    return undefined;
  } catch (err) {
    assert.ok(err instanceof AppError && err.code === "INVALID_ARGUMENT", String(err));
    return err.message;
  }
}

async function requestFields(): Promise<Map<string, DescField>> {
  const dir = new URL("../gen/conveer/v1/", import.meta.url);
  const out = new Map<string, DescField>();
  const walk = (m: DescMessage) => {
    for (const f of m.fields) {
      const key = `${m.typeName}.${f.name}`;
      if (out.has(key)) continue;
      out.set(key, f);
      const nested = f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
      if (nested) walk(nested);
    }
  };
  for (const f of readdirSync(dir).filter((n) => n.endsWith("_pb.js"))) {
    const mod = (await import(new URL(f, dir).href)) as Record<string, unknown>;
    for (const v of Object.values(mod)) if ((v as { kind?: string })?.kind === "service") for (const m of (v as DescService).methods) walk(m.input);
  }
  return out;
}

test("every larger limit names a string field of some request (a renamed field cannot silently fall back to the default)", async () => {
  const fields = await requestFields();
  for (const [key, max] of Object.entries(STRING_LIMITS)) {
    const f = fields.get(key);
    assert.ok(f, `${key} is a field of a request message`);
    const isString =
      (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING) ||
      (f.fieldKind === "list" && f.listKind === "scalar" && f.scalar === ScalarType.STRING) ||
      (f.fieldKind === "map" && f.mapKind === "scalar" && f.scalar === ScalarType.STRING);
    assert.ok(isString, `${key} holds strings`);
    assert.ok(max > MAX_STRING_CHARS, `${key}: an exception only ever raises the default`);
  }
});

test("a string up to its limit passes; one character more is refused naming the field, the limit and the length, never the value", () => {
  assert.equal(problem(ListAccountsRequestSchema, { platform: "p".repeat(MAX_STRING_CHARS) }), undefined);
  assert.equal(problem(ListAccountsRequestSchema, { platform: "p".repeat(MAX_STRING_CHARS + 1) }), `platform must be at most ${MAX_STRING_CHARS} characters, got ${MAX_STRING_CHARS + 1}`);
  assert.equal(problem(ListAccountsRequestSchema, { pageToken: "t".repeat(5000) }), "page_token must be at most 1024 characters, got 5000");
  // The documented exceptions: passwords, credentials' additional values (but not their keys).
  assert.equal(problem(CreateAccountRequestSchema, { password: "p".repeat(4096), additional: { cookies: "c".repeat(65_536) } }), undefined);
  assert.equal(problem(CreateAccountRequestSchema, { password: "p".repeat(4097) }), "password must be at most 4096 characters, got 4097");
  assert.equal(problem(UpdateCredentialsRequestSchema, { additional: { cookies: "c".repeat(65_537) } }), 'additional["cookies"] must be at most 65536 characters, got 65537');
  assert.equal(problem(UpdateCredentialsRequestSchema, { additional: { ["k".repeat(1025)]: "v" } }), "additional (a key) must be at most 1024 characters, got 1025");
  // A nested message keeps its limits, and the path says where.
  const items = [{ login: "a" }, { login: "b", labels: { team: "t".repeat(2000) } }];
  assert.equal(problem(ImportAccountsRequestSchema, { accounts: items }), 'accounts[1].labels["team"] must be at most 1024 characters, got 2000');
});

test("NUL in any string, key or item is refused naming the field", () => {
  assert.equal(problem(CreateAccountRequestSchema, { login: "a\u0000" }), "login must not contain NUL (U+0000) characters");
  assert.equal(problem(CreateAccountRequestSchema, { labels: { "k\u0000": "v" } }), "labels (a key) must not contain NUL (U+0000) characters");
  assert.equal(problem(ImportAccountsRequestSchema, { accounts: [{}, { password: "\u0000" }] }), "accounts[1].password must not contain NUL (U+0000) characters");
});

test("Timestamps: years 1 to 9999 pass, anything outside (or bad nanos) is refused naming the sub-field", () => {
  const ts = (seconds: bigint, nanos = 0) => ({ seconds, nanos });
  assert.equal(problem(GetStatisticsRequestSchema, { from: ts(TIMESTAMP_SECONDS.min), to: ts(TIMESTAMP_SECONDS.max, 999_999_999) }), undefined);
  assert.match(problem(GetStatisticsRequestSchema, { from: ts(TIMESTAMP_SECONDS.min - 1n) })!, /^from\.seconds must be a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z .*got -62135596801$/);
  assert.match(problem(GetStatisticsRequestSchema, { to: ts(TIMESTAMP_SECONDS.max + 1n) })!, /^to\.seconds must be a time/);
  assert.match(problem(GetStatisticsRequestSchema, { to: ts(9_223_372_036_854_775_807n) })!, /^to\.seconds .* got 9223372036854775807$/);
  assert.equal(problem(GetStatisticsRequestSchema, { from: ts(0n, -1) }), "from.nanos must be from 0 to 999999999, got -1");
  assert.equal(problem(GetStatisticsRequestSchema, { from: ts(0n, 1_000_000_000) }), "from.nanos must be from 0 to 999999999, got 1000000000");
  // The ends fit JavaScript's Date and PostgreSQL's timestamptz.
  assert.equal(new Date(Number(TIMESTAMP_SECONDS.min) * 1000).toISOString(), "0001-01-01T00:00:00.000Z");
  assert.equal(new Date(Number(TIMESTAMP_SECONDS.max) * 1000).toISOString(), "9999-12-31T23:59:59.000Z");
});

test("Durations: within ±10000 years, nanos in range and of the sign of seconds", () => {
  const D = "google.protobuf.Duration";
  assert.equal(timeProblem(D, { seconds: DURATION_MAX_SECONDS, nanos: 999_999_999 }), undefined);
  assert.equal(timeProblem(D, { seconds: -DURATION_MAX_SECONDS, nanos: -999_999_999 }), undefined);
  assert.equal(timeProblem(D, { seconds: 0n, nanos: -5 }), undefined);
  assert.equal(timeProblem(D, { seconds: DURATION_MAX_SECONDS + 1n, nanos: 0 })?.field, "seconds");
  assert.equal(timeProblem(D, { seconds: -DURATION_MAX_SECONDS - 1n, nanos: 0 })?.field, "seconds");
  assert.equal(timeProblem(D, { seconds: 0n, nanos: 1_000_000_000 })?.field, "nanos");
  assert.equal(timeProblem(D, { seconds: 1n, nanos: -1 })?.field, "nanos");
  assert.equal(timeProblem(D, { seconds: -1n, nanos: 1 })?.field, "nanos");
  assert.equal(timeProblem("conveer.Other", { seconds: 1n << 62n, nanos: -1 }), undefined);
});

test("the in-process local client runs the same check: a caller cannot tell it from a gRPC port", async () => {
  const binding = {
    service: AccountService,
    scopes: Object.fromEntries(AccountService.methods.map((m) => [m.localName, "accounts:read"])),
    impl: { listAccounts: () => ({ totalCount: 0n }) },
  } as unknown as ServiceBinding;
  const client = localClient<typeof AccountService>(binding, OPEN_PRINCIPAL);
  assert.equal((await client.listAccounts({ platform: "vk" })).totalCount, 0n);
  await assert.rejects(client.listAccounts({ platform: "x".repeat(2000) }), (err: unknown) => {
    assert.ok(err instanceof ConnectError && err.code === Code.InvalidArgument, String(err));
    assert.equal(err.rawMessage, "platform must be at most 1024 characters, got 2000");
    return true;
  });
});
