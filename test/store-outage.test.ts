/**
 * The store goes away under load, and the process stays up. A real `conveer start` reaches
 * PostgreSQL through a TCP relay the test breaks (pg_terminate_backend, RST on every connection,
 * refused connections, a blackhole) while API calls and warming actions run; a second replica
 * reaches PostgreSQL directly. Asserted: the process never exits; calls during an outage end
 * UNAVAILABLE (or DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED), never INTERNAL, within the configured
 * timeouts; /healthz answers 503 within a second while the store is away; service resumes by
 * itself; no acknowledged write is missing; a StreamEvents subscriber on the relayed process gets
 * every event once, in order; warming completes with exact books.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WarmingEvent } from "../src/gen/conveer/v1/warming_pb.js";
import { openPostgres } from "../src/store/postgres.ts";
import type { Db } from "../src/store/db.ts";
import { eventually } from "./support/grpc.ts";
import { startTcpRelay } from "./support/tcp-relay.ts";
import type { TcpRelay } from "./support/tcp-relay.ts";
import { PER_TASK, checkBooks, setUp, startAll, waitEnded } from "./support/warming-system.ts";
import type { Setup } from "./support/warming-system.ts";

const CONNECT_TIMEOUT_MS = 1000;
const QUERY_TIMEOUT_MS = 2000;
/** The longest a failed call may take: a connection attempt, one silent query, and scheduling slack on a loaded 2-core machine. */
const FAIL_WITHIN_MS = CONNECT_TIMEOUT_MS + QUERY_TIMEOUT_MS + 2000;
const TASKS = 60;

type Outcome = { phase: string; method: string; code: string; ms: number; at: number };

describe("the store goes away under load and comes back", { skip: process.env.CONVEER_TEST_DATABASE_URL ? false : "needs CONVEER_TEST_DATABASE_URL (faults are injected between Conveer and PostgreSQL)" }, () => {
  let s: Setup;
  let relay: TcpRelay;
  let db: Db;
  let admin: pg.Client;
  /** Ends the test's load and stream, also when an assertion failed midway. */
  let stopAll = () => {};
  before(async () => {
    // Two scenario days in about 50 s, so warming runs through every fault below.
    s = await setUp("postgres", { CONVEER_TIME_SCALE: "3500", CONVEER_PROXY_ALLOW_PRIVATE: "true" });
    const u = new URL(s.dbUrl);
    relay = await startTcpRelay(u.hostname, Number(u.port || 5432));
    db = openPostgres({ url: s.dbUrl, max: 2 });
    admin = new pg.Client({ connectionString: s.dbUrl });
    await admin.connect();
  });
  after(async () => {
    stopAll();
    await admin?.end();
    await db?.close();
    await relay?.close();
    await s?.close();
  });

  test("terminated backends, resets, refusals and a blackhole: the process lives, fails fast, recovers, loses nothing", { timeout: 240_000 }, async () => {
    const viaRelay = new URL(s.dbUrl);
    viaRelay.hostname = "127.0.0.1";
    viaRelay.port = String(relay.port);
    const env = { CONVEER_DB_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS), CONVEER_DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS) };
    const relayed = await s.start("relayed", undefined, { ...env, DATABASE_URL: viaRelay.toString() });
    const direct = await s.start("direct", undefined, env);
    const accountIds = await s.accounts(direct, TASKS, "outage");
    const taskIds = await startAll([relayed, direct], accountIds);

    // A subscriber on the relayed process, resuming from its last event after any error (as `warm watch` does).
    const got: WarmingEvent[] = [];
    let resumes = 0;
    const streamAbort = new AbortController();
    const stream = (async () => {
      let last = "0";
      while (!streamAbort.signal.aborted) {
        try {
          for await (const e of relayed.warming.streamEvents({ afterEventId: last }, { signal: streamAbort.signal })) {
            got.push(e);
            last = e.eventId;
          }
        } catch {
          if (streamAbort.signal.aborted) return;
          resumes++;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();

    // API load on the relayed process: writes (CreateAccount) and reads (GetAccount, ListAccounts).
    let phase = "warm-up";
    const began = Date.now();
    const mark = (p: string) => {
      phase = p;
      console.log(`# ${((Date.now() - began) / 1000).toFixed(1)} s: ${p}`);
    };
    const outcomes: Outcome[] = [];
    const acknowledged: string[] = [];
    let stopLoad = false;
    stopAll = () => {
      stopLoad = true;
      streamAbort.abort();
    };
    const call = async <T>(method: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const t0 = performance.now();
      try {
        const r = await fn();
        outcomes.push({ phase, method, code: "OK", ms: performance.now() - t0, at: Date.now() });
        return r;
      } catch (err) {
        const code = err instanceof ConnectError ? Code[err.code] : `not a ConnectError: ${String(err)}`;
        outcomes.push({ phase, method, code, ms: performance.now() - t0, at: Date.now() });
        return undefined;
      }
    };
    const loops = Array.from({ length: 12 }, async (_, w) => {
      for (let n = 0; !stopLoad; n++) {
        const created = await call("CreateAccount", () => relayed.accounts.createAccount({ platform: "vk", login: `load_${w}_${n}`, password: "pw" }, { timeoutMs: 10_000 }));
        if (created) acknowledged.push(created.id);
        if (created) await call("GetAccount", () => relayed.accounts.getAccount({ accountId: created.id }, { timeoutMs: 10_000 }));
        if (n % 5 === 0) await call("ListAccounts", () => relayed.accounts.listAccounts({ pageSize: 20 }, { timeoutMs: 10_000 }));
        if (!created) await new Promise((r) => setTimeout(r, 50));
      }
    });

    const healthz: { phase: string; status: number; ms: number; body: string }[] = [];
    const probeHealth = async (until: () => boolean) => {
      while (!until()) {
        const t0 = performance.now();
        const { status, body } = await fetch(`http://127.0.0.1:${relayed.http}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
          async (r) => ({ status: r.status, body: await r.text() }),
          () => ({ status: 0, body: "" }),
        );
        healthz.push({ phase, status, ms: performance.now() - t0, body });
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    /** Waits for a successful write after the store came back; answers how long it took. */
    const recovered = async (): Promise<number> => {
      const t0 = Date.now();
      await eventually(async () => outcomes.some((o) => o.method === "CreateAccount" && o.code === "OK" && o.at > t0), 15_000, `a write succeeding again after ${phase}`);
      return Date.now() - t0;
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const recovery: Record<string, number> = {};

    await sleep(1500);
    mark("terminate");
    for (let i = 0; i < 8; i++) {
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
      await sleep(300);
    }
    mark("after-terminate");
    recovery.terminate = await recovered();

    mark("reset");
    for (let i = 0; i < 6; i++) {
      relay.reset();
      await sleep(400);
    }
    mark("after-reset");
    recovery.reset = await recovered();

    for (const fault of ["refuse", "blackhole"] as const) {
      mark(fault);
      await relay.set(fault);
      const t0 = Date.now();
      await probeHealth(() => Date.now() - t0 > 5000);
      await relay.set("pass");
      mark(`after-${fault}`);
      recovery[fault] = await recovered();
      const served = performance.now();
      await eventually(async () => (await fetch(`http://127.0.0.1:${relayed.http}/healthz`)).status === 200, 10_000, `/healthz 200 after ${fault}`);
      recovery[`${fault} (healthz)`] = Math.round(performance.now() - served);
    }
    mark("settled");
    const workedBefore = (await relayed.workerActions()).recorded;
    await sleep(1500);
    stopLoad = true;
    await Promise.all(loops);

    // The process never went down.
    assert.ok(relayed.cli.running(), `the relayed process exited: ${relayed.cli.stderr().slice(-2000)}`);
    assert.ok(direct.cli.running(), `the direct process exited: ${direct.cli.stderr().slice(-2000)}`);

    // Every call either succeeded or ended with a retryable status, in bounded time.
    const failed = outcomes.filter((o) => o.code !== "OK");
    const byCode = Object.groupBy(failed, (o) => o.code);
    const summary = Object.fromEntries(Object.entries(byCode).map(([c, xs]) => [c, xs!.length]));
    console.log(`# ${outcomes.length} calls, ${failed.length} failed ${JSON.stringify(summary)}; recovery ms ${JSON.stringify(recovery)}`);
    const wrong = failed.filter((o) => !["Unavailable", "DeadlineExceeded", "ResourceExhausted"].includes(o.code));
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} calls failed with a status other than UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED`);
    const slow = failed.filter((o) => o.ms > FAIL_WITHIN_MS);
    assert.deepEqual(slow.slice(0, 5), [], `${slow.length} failed calls took longer than ${FAIL_WITHIN_MS} ms`);
    for (const f of ["terminate", "reset", "refuse", "blackhole"]) {
      assert.ok(outcomes.some((o) => o.phase === `after-${f}` && o.code === "OK") || recovery[f] !== undefined, `calls succeed after ${f}`);
    }
    assert.ok(failed.some((o) => o.phase === "refuse") && failed.some((o) => o.phase === "blackhole"), "the outages were felt by the callers");

    // /healthz answered within a second during the outages, with 503.
    for (const f of ["refuse", "blackhole"]) {
      const during = healthz.filter((h) => h.phase === f);
      assert.ok(during.length >= 3, `/healthz probed during ${f}`);
      const late = during.filter((h) => h.ms > 1000);
      assert.deepEqual(late, [], `/healthz answered within 1 s during ${f}`);
      assert.ok(during.filter((h) => h.status === 503).length >= during.length - 2, `/healthz said 503 during ${f}: ${JSON.stringify(during.map((h) => h.status))}`);
      const dbName = new URL(s.dbUrl).pathname.slice(1);
      const leaky = during.filter((h) => h.body.includes(String(relay.port)) || h.body.includes(dbName) || h.body.includes("postgres"));
      assert.deepEqual(leaky.map((h) => h.body).slice(0, 2), [], "a 503 names no database address, user or name");
    }

    // Nothing acknowledged is missing.
    const stored = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM accounts WHERE id = ANY($1::text[])", [acknowledged]);
    assert.equal(stored.rows[0].n, acknowledged.length, "every acknowledged CreateAccount is stored");

    // Warming finished with exact books, and the relayed process's worker did work after the last outage.
    const tasks = await waitEnded(direct.warming, taskIds, 120_000);
    await checkBooks(db, s, tasks);
    assert.ok((await relayed.workerActions()).recorded > workedBefore, "the relayed process's worker recorded actions after the last outage");
    await sleep(1500);
    streamAbort.abort();
    await stream;
    const events = (await db.query<{ id: string }>("SELECT id::text AS id FROM warming_events WHERE task_id = ANY($1::text[]) ORDER BY warming_events.id", [taskIds])).rows.map((r) => r.id);
    const mine = got.filter((e) => taskIds.includes(e.taskId)).map((e) => e.eventId);
    assert.deepEqual(mine, events, `the subscriber on the relayed process got every event once, in order (${resumes} resumes)`);
    assert.ok(events.length >= TASKS * PER_TASK);
  });
});
