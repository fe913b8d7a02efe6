/**
 * WarmingService.GetActionRate on a real system (PGlite, and PostgreSQL when
 * CONVEER_TEST_DATABASE_URL is set), over gRPC on the warming port and over Connect JSON on the
 * HTTP port: action_completed / action_failed events counted in the real-time minute of their
 * created_at, 60 minutes oldest first with zeros, nothing else counted; the per-process cache of
 * finished minutes never holds back the current or the previous minute; the scope it needs.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { toJson } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { createToken } from "../src/auth/tokens.ts";
import { ActionRateSchema, WarmingService } from "../src/gen/conveer/v1/warming_pb.js";
import type { ActionRate } from "../src/gen/conveer/v1/warming_pb.js";
import { remoteClient } from "../src/server/clients.ts";
import { createIdGenerator } from "../src/store/ids.ts";
import { rejectsWith } from "./support/grpc.ts";
import { STORE_KINDS } from "./support/store.ts";
import { startTestSystem } from "./support/system.ts";
import type { TestSystem } from "./support/system.ts";

const MINUTE = 60_000;

/** Waits until the clock is at least 12 s away from the next minute, so that a few calls see one window. */
async function awayFromMinuteEdge(): Promise<void> {
  const into = Date.now() % MINUTE;
  if (into > MINUTE - 12_000) await sleep(MINUTE - into + 500);
}

/** Counts of one minute (by its start, epoch ms) in an answer; undefined when the minute is not in it. */
function at(rate: ActionRate, minute: number): { completed: number; failed: number } | undefined {
  const m = rate.minutes.find((x) => timestampMs(x.start!) === minute);
  return m && { completed: Number(m.completed), failed: Number(m.failed) };
}

for (const kind of STORE_KINDS) {
  describe(`GetActionRate on ${kind}, over gRPC and Connect JSON`, () => {
    let sys: TestSystem;
    let reader: Client<typeof WarmingService>;
    let readToken = "";
    let adminOnly = "";
    let base = "";
    const sessions: Http2SessionManager[] = [];

    /** Inserts `n` events of a type written at `createdAt` (epoch ms), the way a recording would leave them. */
    async function events(type: string, n: number, createdAt: number): Promise<void> {
      await sys.db.query(
        `INSERT INTO warming_events (task_id, event_type, at, data, created_at)
         SELECT 'rate-task', $1, now(), '{}', to_timestamp($3::float8 / 1000) FROM generate_series(1, $2::int)`,
        [type, n, createdAt],
      );
    }

    /** The store's current minute (epoch ms). */
    async function storeMinute(): Promise<number> {
      const r = await sys.db.query<{ m: Date | string }>("SELECT date_trunc('minute', now()) AS m");
      return new Date(r.rows[0].m).getTime();
    }

    /** GetActionRate over Connect JSON with fetch: HTTP status and body. */
    async function viaJson(token: string): Promise<{ status: number; body: JsonObject }> {
      const res = await fetch(`${base}/conveer.WarmingService/GetActionRate`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: "{}",
      });
      return { status: res.status, body: (await res.json()) as JsonObject };
    }

    before(async () => {
      sys = await startTestSystem(kind, { env: { CONVEER_AUTH: "tokens" }, services: ["account", "proxy", "warming"] });
      base = `http://127.0.0.1:${sys.app.httpPort}`;
      const newId = createIdGenerator();
      readToken = await createToken(sys.db, newId(), "rate-reader", ["warming:read"]);
      adminOnly = await createToken(sys.db, newId(), "rate-admin", ["admin"]);
      reader = remoteClient(WarmingService, { addr: sys.addr("warming"), token: readToken, sessions });
    });

    after(async () => {
      for (const s of sessions) s.abort();
      await sys?.stop();
    });

    test("60 minutes oldest first, zeros included; completed and failed in the minute of created_at; action_started and status_changed not counted; the same over gRPC and Connect JSON", async () => {
      await awayFromMinuteEdge();
      const now = await storeMinute();
      const ago = (k: number) => now - k * MINUTE + 30_000;
      await events("action_completed", 3, ago(5));
      await events("action_failed", 2, ago(5));
      await events("action_started", 7, ago(5));
      await events("status_changed", 2, ago(5));
      await events("action_completed", 4, ago(30));
      await events("action_failed", 1, ago(59));
      await events("action_completed", 6, ago(60)); // an hour ago: out of the window
      await events("action_started", 5, ago(2));
      await events("action_completed", 1, now + 1_000);

      const rate = await reader.getActionRate({});
      assert.equal(rate.minutes.length, 60);
      const starts = rate.minutes.map((m) => timestampMs(m.start!));
      assert.equal(starts[59], now, "the last entry is the store's current minute");
      for (let i = 1; i < 60; i++) assert.equal(starts[i] - starts[i - 1], MINUTE, `minute ${i} follows minute ${i - 1}`);
      assert.deepEqual(at(rate, now - 5 * MINUTE), { completed: 3, failed: 2 }, "5 minutes ago: only completed and failed");
      assert.deepEqual(at(rate, now - 30 * MINUTE), { completed: 4, failed: 0 });
      assert.deepEqual(at(rate, now - 59 * MINUTE), { completed: 0, failed: 1 }, "the oldest minute of the hour");
      assert.equal(at(rate, now - 60 * MINUTE), undefined, "an hour ago is out of the window");
      assert.deepEqual(at(rate, now - 2 * MINUTE), { completed: 0, failed: 0 }, "action_started alone counts nothing");
      assert.deepEqual(at(rate, now), { completed: 1, failed: 0 }, "the current minute");
      const zeros = rate.minutes.filter((m) => m.completed === 0n && m.failed === 0n).length;
      assert.equal(zeros, 56, "every other minute present with zeros");
      const total = rate.minutes.reduce((s, m) => s + Number(m.completed) + Number(m.failed), 0);
      assert.equal(total, 11);

      const json = await viaJson(readToken);
      assert.equal(json.status, 200, JSON.stringify(json.body));
      assert.deepEqual(json.body, toJson(ActionRateSchema, await reader.getActionRate({})), "Connect JSON answers as gRPC does");
      assert.equal((json.body.minutes as JsonObject[])[54].completed, "3", "int64 counts as JSON strings");
    });

    test("the cache of finished minutes does not freeze the current or the previous minute", async () => {
      await awayFromMinuteEdge();
      const first = await reader.getActionRate({});
      const now = timestampMs(first.minutes[59].start!);
      const before = (m: number) => at(first, m) ?? { completed: 0, failed: 0 };
      await events("action_completed", 2, now + 2_000);
      await events("action_failed", 1, now - MINUTE + 10_000);
      await events("action_completed", 1, now - 10 * MINUTE + 10_000); // into a minute this process has kept

      const second = await reader.getActionRate({});
      assert.equal(second.minutes.length, 60);
      const cur = before(now);
      assert.deepEqual(at(second, now), { completed: cur.completed + 2, failed: cur.failed }, "the current minute counts what came since");
      const prev = before(now - MINUTE);
      assert.deepEqual(at(second, now - MINUTE), { completed: prev.completed, failed: prev.failed + 1 }, "the previous minute is read again too");
      // A row backdated into a finished minute after this process kept it is not read again:
      // what the cache saves (the skew README.md documents for a transaction that commits late).
      assert.deepEqual(at(second, now - 10 * MINUTE), before(now - 10 * MINUTE), "a kept minute is served from the cache");
      const json = await viaJson(readToken);
      assert.deepEqual(json.body, toJson(ActionRateSchema, await reader.getActionRate({})), "the HTTP port serves the same process's counts");
      const [a, b] = await Promise.all([reader.getActionRate({}), reader.getActionRate({})]);
      assert.deepEqual(a, b, "calls at once (one shared read) answer alike");
      assert.deepEqual(at(a, now), at(second, now));
    });

    test("needs warming:read: no token is unauthenticated (401), a token without the scope permission_denied (403)", async () => {
      const anon = await viaJson("");
      assert.deepEqual([anon.status, anon.body.code], [401, "unauthenticated"]);
      const denied = await viaJson(adminOnly);
      assert.deepEqual([denied.status, denied.body.code], [403, "permission_denied"]);
      assert.match(String(denied.body.message), /warming:read/);
      const other = remoteClient(WarmingService, { addr: sys.addr("warming"), token: adminOnly, sessions });
      await rejectsWith(other.getActionRate({}), Code.PermissionDenied, /warming:read/);
    });
  });
}
