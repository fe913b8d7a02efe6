import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { SHUTDOWN_ORDER, createReleasers } from "./releasers.ts";
import type { Resource } from "./releasers.ts";

const log = pino({ level: "silent" });

test("releases in SHUTDOWN_ORDER whatever the order they were registered in, passing the grace", async () => {
  const r = createReleasers(log);
  const ran: [Resource, number][] = [];
  for (const resource of [...SHUTDOWN_ORDER].reverse()) r.add(resource, async (grace) => void ran.push([resource, grace]));
  await r.release(1234);
  assert.deepEqual(ran, SHUTDOWN_ORDER.map((x) => [x, 1234]));
});

test("background work that holds calls stops before the gRPC drain, the store last", () => {
  const at = (x: Resource) => SHUTDOWN_ORDER.indexOf(x);
  assert.ok(at("warming") < at("grpc") && at("sms") < at("grpc"));
  assert.ok(at("http") < at("grpc") && at("grpc") < at("vault"));
  assert.equal(SHUTDOWN_ORDER.at(-1), "store");
});

test("a failing release is logged and the rest still run; a second release answers the first", async () => {
  const warned: string[] = [];
  const r = createReleasers(pino({ level: "warn" }, { write: (line: string) => void warned.push(line) }));
  const ran: Resource[] = [];
  r.add("store", async () => void ran.push("store"));
  r.add("http", async () => {
    throw new Error("boom");
  });
  const first = r.release(10);
  assert.equal(r.release(10), first);
  await first;
  assert.deepEqual(ran, ["store"]);
  assert.match(warned.join(""), /boom/);
});

test("a resource registered twice is a bug", () => {
  const r = createReleasers(log);
  r.add("vault", async () => {});
  assert.throws(() => r.add("vault", async () => {}), /vault was registered twice/);
});
