/**
 * Three Conveer hosts in network namespaces on one PostgreSQL cluster of the test's own, tokens
 * on, TLS on every host (see cluster.ts), under faults:
 * - partition: one host's link goes down mid-warming (with registrations waiting for their SMS
 *   code on it) for longer than the warming and registration leases, then heals. Every planned
 *   action is recorded exactly once (the sandbox's idempotency keys against the tasks' counts
 *   and events), the cut host's late results are dropped (fenced), its registrations are cleaned
 *   up by the others, and no proxy or number is left held.
 * - TLS to the database: the test's PostgreSQL refuses a plain connection, every host's
 *   connections are TLS (verify-full against the test CA), and a host given a plain URL or
 *   another CA says at start which DATABASE_URL parameters fix it.
 * - kill -9 of a host under load (with registrations waiting for their SMS code on it), and its
 *   return: the same books.
 * Needs root (ip netns); skipped with the reason otherwise. CI runs as root.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import pg from "pg";
import { MAIN, runCli, terminate } from "../support/cli.ts";
import { eventually } from "../support/grpc.ts";
import { LEASE_MS, PER_TASK, createCluster } from "./cluster.ts";
import type { Cluster } from "./cluster.ts";
import { makeCa } from "./certs.ts";
import { addProxies, checkExactlyOnce, checkNothingHeld, checkRegistrationsTakenOver, describeOutcomes, makeAccounts, registrationsWaiting, startTasks, waitEnded } from "./books.ts";
import { netnsUnavailable } from "./netns.ts";
import { postgresBin } from "./pg-cluster.ts";

const skip = netnsUnavailable() || (postgresBin() ? false : "needs Debian's PostgreSQL under /usr/lib/postgresql (initdb, pg_ctl)");
const TASKS = 60;
const SKEW_MS = 3 * 60_000;
const TIME_SCALE_NOTE = "10800: 3 real minutes are 22.5 scenario days";

describe("three hosts in network namespaces on one PostgreSQL, tokens and TLS on", { skip, timeout: 900_000 }, () => {
  let c: Cluster;
  before(async () => {
    c = await createCluster();
    for (const h of c.hosts) await h.start();
    await addProxies(c, c.hosts[0], 1000);
    // Platform calls take 20-80 ms, so actions are in flight whenever a fault lands.
    c.sandbox.setFaults({ latency: { minMs: 20, maxMs: 80 } });
  }, { timeout: 300_000 });
  after(async () => {
    if (c) for (const h of c.hosts) if (h.cli?.running()) for (const l of h.cli.logs()) if (Number(l.level) >= 50) console.log(`# ${h.name}: ${JSON.stringify(l).slice(0, 600)}`);
    await c?.close();
  }, { timeout: 120_000 });

  test("TLS to the database: a plain connection is refused, every host's is TLS, and a wrong DATABASE_URL says how to fix it", { timeout: 120_000 }, async () => {
    const plain = new pg.Client({ connectionString: c.pg.plainUrl });
    await assert.rejects(plain.connect(), (err: Error & { code?: string }) => err.code === "28000" && /no encryption/.test(err.message));
    await plain.end().catch(() => {});
    const conns = await c.db.query<{ addr: string; ssl: boolean }>("SELECT host(a.client_addr) AS addr, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL");
    assert.deepEqual(conns.rows.filter((r) => !r.ssl), [], "every connection to the database is TLS");
    for (const h of c.hosts) assert.ok(conns.rows.some((r) => r.addr === h.addr), `${h.name} holds connections`);
    // From host1's namespace, as another machine: no TLS, then TLS checked against a CA that did not sign the database's certificate.
    const other = makeCa(c.dir, "other-ca");
    const cases = [
      [c.pg.plainUrl, /the database accepts only TLS connections; DATABASE_URL needs sslmode=verify-full&sslrootcert=/],
      [c.pg.url.replace(/sslrootcert=[^&]*/, `sslrootcert=${encodeURIComponent(other.cert)}`), /the database's TLS certificate is not signed by a trusted CA; DATABASE_URL needs sslmode=verify-full&sslrootcert=/],
    ] as const;
    for (const [url, message] of cases) {
      const cli = runCli(["migrate", "--check"], { DATABASE_URL: url, CONVEER_DATA_DIR: join(c.dir, "tls-check") }, { argv: ["ip", "netns", "exec", c.net.hosts[0].ns, process.execPath, MAIN], cwd: c.dir });
      assert.equal(await cli.exited, 1, cli.stdout());
      assert.match(cli.stderr(), message);
    }
  });

  test("partition: a host cut from the database past its leases, then healed: exactly once, late results fenced, registrations cleaned up, nothing held", { timeout: 300_000 }, async () => {
    const [h1, h2, h3] = c.hosts;
    const accountIds = await makeAccounts(c, h1, TASKS, "part");
    const ids = await startTasks(c.hosts, accountIds);
    // Slow platform answers (300-600 ms), so host3 has actions in flight when it is cut.
    c.sandbox.setFaults({ latency: { minMs: 300, maxMs: 600 }, codeDelayMs: 4000 });
    let before: Record<string, number> = {};
    await eventually(async () => {
      before = await h3.workerActions();
      return before.recorded >= 20 && before.in_flight >= 1;
    }, 60_000, "host3 to be recording with actions in flight");
    // Registrations on the host about to be cut, started once it is busy (started earlier, they
    // could finish before it was): each waits for an SMS code that comes late.
    const regs = await registrationsWaiting(c, h3, "cut_reg");

    await eventually(async () => {
      before = await h3.workerActions();
      return before.in_flight >= 1;
    }, 20_000, "host3 to have actions in flight at the cut");
    c.net.setLink(2, false);
    const cutAt = performance.now();
    const others0 = (await h1.workerActions()).recorded + (await h2.workerActions()).recorded;
    // Longer than both leases (warming and registration) several times over.
    await sleep(LEASE_MS * 4);
    const others1 = (await h1.workerActions()).recorded + (await h2.workerActions()).recorded;
    assert.ok(others1 > others0, "the other hosts go on while host3 is cut");
    // Re-claims: recorded ones (the action's attempts), and ones still in flight (the queue row's).
    const reclaimedDuringCut = (await c.db.query<{ n: number }>("SELECT ((SELECT count(*) FROM warming_actions WHERE attempts > 1) + (SELECT count(*) FROM warming_due WHERE attempts > 1))::int AS n")).rows[0].n;
    c.net.setLink(2, true);
    const cutMs = performance.now() - cutAt;

    const tasks = await waitEnded(h1, ids, 240_000);
    const books = await checkExactlyOnce(c, tasks);
    // Host3 comes back by itself and its late results are refused.
    await eventually(async () => (await h3.workerActions()).recorded !== undefined, 30_000, "host3 to answer again after the heal");
    const after3 = await h3.workerActions();
    const regResults = await regs.outcomes;
    // Registrations cut mid-way were taken over and undone by the other hosts (failed, "interrupted at
    // wait_code"), and host3's late steps did not overwrite that.
    const regRows = await checkRegistrationsTakenOver(c, "cut_reg", regResults);
    await checkNothingHeld(c);
    assert.ok(reclaimedDuringCut > 0, "another host took over the cut host's actions once their lease lapsed");
    assert.ok(books.replays <= books.reclaimed, `platform repeats (${books.replays}) at most the re-claimed actions (${books.reclaimed})`);
    console.log(
      `# partition: host3 cut for ${(cutMs / 1000).toFixed(1)} s with ${before.in_flight} actions in flight (leases ${LEASE_MS} ms); ${books.reclaimed} actions re-claimed by other hosts, ${books.replays} answered by the platform from their key, host3 dropped ${after3.dropped} late results; ${TASKS * PER_TASK} actions recorded exactly once; registrations on host3: ${JSON.stringify(regRows.map((r) => [r.status, r.failed_step, r.error.slice(0, 40)]))} (callers saw ${describeOutcomes(regResults)})`,
    );
  });

  test("kill -9 of a host under load, then its return: exactly once, its registrations taken over, nothing held", { timeout: 300_000 }, async () => {
    const [h1, h2] = c.hosts;
    // Slow platform answers (300-600 ms), so actions are still in flight when the host is killed,
    // and SMS codes that come late, so its registrations are waiting for theirs.
    c.sandbox.setFaults({ latency: { minMs: 300, maxMs: 600 }, codeDelayMs: 4000 });
    const accountIds = await makeAccounts(c, h1, TASKS, "kill");
    const ids = await startTasks(c.hosts, accountIds);
    let before: Record<string, number> = {};
    await eventually(async () => {
      before = await h2.workerActions();
      return before.in_flight >= 1 && before.recorded >= 20;
    }, 60_000, "host2 busy");
    const regs = await registrationsWaiting(c, h2, "kill_reg");
    const reclaimed0 = (await c.db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_actions WHERE attempts > 1")).rows[0].n;
    h2.cli.proc.kill("SIGKILL");
    assert.equal(await h2.cli.exited, "SIGKILL");
    await sleep(LEASE_MS * 2);
    await h2.start();
    const tasks = await waitEnded(h1, ids, 240_000);
    const books = await checkExactlyOnce(c, tasks);
    const regResults = await regs.outcomes;
    const regRows = await checkRegistrationsTakenOver(c, "kill_reg", regResults);
    await checkNothingHeld(c);
    const reclaimed = (await c.db.query<{ n: number }>("SELECT count(*)::int AS n FROM warming_actions WHERE attempts > 1 AND task_id = ANY($1::text[])", [ids])).rows[0].n;
    assert.ok(reclaimed > 0, `actions in flight on the killed host were claimed again (${reclaimed0} before)`);
    console.log(`# kill -9: host2 killed with ${before.in_flight} in flight; ${reclaimed} actions re-claimed, ${books.replays} answered by the platform from their key; ${TASKS * PER_TASK} actions recorded exactly once; registrations on host2: ${JSON.stringify(regRows.map((r) => [r.status, r.failed_step, r.error.slice(0, 40)]))} (callers saw ${describeOutcomes(regResults)})`);
  });

  test("database restart under load (immediate stop, 5 s down): every host recovers by itself; nothing acknowledged is lost; exactly once", { timeout: 300_000 }, async () => {
    const [h1, h2, h3] = c.hosts;
    const accountIds = await makeAccounts(c, h1, TASKS, "dbrs");
    const ids = await startTasks(c.hosts, accountIds);
    await eventually(async () => (await h1.workerActions()).recorded > 0 && (await h3.workerActions()).in_flight >= 1, 60_000, "work in flight");
    // Writes acknowledged right up to the stop, through every host.
    const acked: string[] = [];
    let writing = true;
    const writers = c.hosts.map(async (h, k) => {
      for (let n = 0; writing; n++) {
        try {
          acked.push((await h.accounts.createAccount({ platform: "vk", login: `acked_${k}_${n}`, password: "pw" })).id);
        } catch {
          await sleep(50); // UNAVAILABLE while the store is down: not acknowledged
        }
      }
    });
    await sleep(1000);
    const downAt = performance.now();
    c.pg.stop("immediate");
    await sleep(5000);
    c.pg.start();
    const upAt = performance.now();
    // Every host serves again by itself (its /healthz back to 200), none restarted.
    const back: number[] = [];
    for (const h of c.hosts) {
      await eventually(async () => (await h.workerActions()).recorded !== undefined && (await h.accounts.listAccounts({ pageSize: 1 })).accounts.length > 0, 60_000, `${h.name} to serve again`);
      back.push(performance.now() - upAt);
      assert.ok(h.cli.running(), `${h.name} exited`);
    }
    writing = false;
    await Promise.all(writers);
    const tasks = await waitEnded(h2, ids, 240_000);
    const books = await checkExactlyOnce(c, tasks);
    const found = await c.db.query<{ id: string }>("SELECT id FROM accounts WHERE id = ANY($1::text[])", [acked]);
    assert.equal(found.rows.length, acked.length, "every acknowledged CreateAccount is in the store");
    await checkNothingHeld(c);
    console.log(
      `# database restart: down ${((upAt - downAt) / 1000).toFixed(1)} s; hosts serving again ${back.map((ms) => (ms / 1000).toFixed(1)).join(", ")} s after it was up; ${acked.length} acknowledged writes all kept; ${books.reclaimed} actions re-claimed; ${TASKS * PER_TASK} actions recorded exactly once`,
    );
  });

  test("clock skew: a host whose clock is 3 minutes ahead neither runs actions early nor takes leases", { timeout: 300_000 }, async () => {
    const [h1, , h3] = c.hosts;
    c.sandbox.setFaults({ latency: { minMs: 20, maxMs: 80 }, codeDelayMs: 300 });
    assert.equal((await terminate(h3.cli)).code, 0);
    await h3.start({ CONVEER_CLOCK_OFFSET_MS: String(SKEW_MS) });
    const before3 = await h3.workerActions();
    const accountIds = await makeAccounts(c, h1, TASKS, "skew");
    const ids = await startTasks(c.hosts, accountIds);
    // Sampled while the tasks run: actions started (or done) whose due time is still ahead of the
    // shared scenario clock, read on the database's own clock (a margin of 1 real second).
    let early = 0;
    let samples = 0;
    const sample = async () => {
      const r = await c.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM warming_actions a, warming_clock k
         WHERE a.task_id = ANY($1::text[])
           AND (a.status <> 'pending' OR EXISTS (SELECT 1 FROM warming_due d WHERE d.task_id = a.task_id AND d.seq = a.seq AND d.lease_until IS NOT NULL))
           AND a.due_at > k.scenario_at + (clock_timestamp() - k.real_at) * k.scale + (1000 * k.scale) * interval '1 millisecond'`,
        [ids],
      );
      early = Math.max(early, r.rows[0].n);
      samples++;
    };
    let tasks: Awaited<ReturnType<typeof waitEnded>> = [];
    const done = waitEnded(h1, ids, 240_000).then((t) => (tasks = t));
    while (tasks.length === 0) {
      await sample();
      await Promise.race([done, sleep(250)]);
    }
    await done;
    assert.equal(early, 0, `${early} actions ran before they were due (the skewed host ran them by its own clock)`);
    const books = await checkExactlyOnce(c, tasks);
    assert.equal(books.reclaimed, 0, "no lease was taken over: leases are on the database's clock");
    assert.match(h3.cli.stdout(), /differs from the database's/, "the skewed host said so at start");
    const after3 = await h3.workerActions();
    assert.ok(after3.recorded - (before3.recorded ?? 0) > 0, "the skewed host did its share of the work");
    console.log(`# clock skew: host3 ${SKEW_MS / 60_000} min ahead (scenario clock ×${TIME_SCALE_NOTE}); ${samples} samples, no action early, no lease taken over; host3 recorded ${after3.recorded - (before3.recorded ?? 0)} of ${TASKS * PER_TASK}`);
  });
});
