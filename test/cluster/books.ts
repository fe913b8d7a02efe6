/**
 * The cluster tests' workload and books: accounts and warming tasks spread over the hosts, and
 * the checks afterwards against the store and the sandbox's own record of idempotency keys.
 */
import assert from "node:assert/strict";
import { WarmingStatus } from "../../src/gen/conveer/v1/warming_pb.js";
import type { WarmingTask } from "../../src/gen/conveer/v1/warming_pb.js";
import { eventually } from "../support/grpc.ts";
import { PER_TASK, SCENARIO } from "./cluster.ts";
import type { Cluster, Host } from "./cluster.ts";

/** n sandbox users imported as ACTIVE accounts (through `via`), and the proxies given room for them. */
export async function makeAccounts(c: Cluster, via: Host, n: number, prefix: string): Promise<string[]> {
  const items = Array.from({ length: n }, (_, i) => ({ platform: "vk", login: `${prefix}_${i}`, password: `pw-${prefix}-${i}` }));
  for (const a of items) c.sandbox.addUser("vk", a.login, a.password);
  const r = await via.accounts.importAccounts({ accounts: items });
  assert.equal(r.imported, n, JSON.stringify(r.results.filter((x) => x.error).slice(0, 3)));
  return r.results.map((x) => x.accountId);
}

/** Adds the cluster's proxies once, each with room for `capacity` accounts. */
export async function addProxies(c: Cluster, via: Host, capacity: number): Promise<void> {
  const added = await via.proxies.addProxies({ proxies: c.proxies.map((p) => ({ url: p.url, capacity, country: "RU" })) });
  for (const x of added.results) assert.ok(x.proxyId, x.error);
}

/** A warming task per account, started through the hosts in turn, ten at a time. */
export async function startTasks(hosts: Host[], accountIds: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < accountIds.length; i += 10) {
    const batch = accountIds.slice(i, i + 10);
    const tasks = await Promise.all(batch.map((accountId, k) => hosts[(i + k) % hosts.length].warming.startWarming({ accountId, scenarioId: SCENARIO.id })));
    for (const t of tasks) assert.equal(t.status, WarmingStatus.RUNNING);
    ids.push(...tasks.map((t) => t.id));
  }
  return ids;
}

/** Waits until no task is RUNNING; answers them. */
export async function waitEnded(via: Host, ids: string[], ms: number): Promise<WarmingTask[]> {
  let tasks: WarmingTask[] = [];
  await eventually(
    async () => {
      tasks = await Promise.all(ids.map((taskId) => via.warming.getWarmingStatus({ taskId })));
      return tasks.every((t) => t.status !== WarmingStatus.RUNNING);
    },
    ms,
    "every task to end",
  );
  return tasks;
}

/**
 * Exactly once: every task COMPLETED with every planned action done; one action_completed event
 * per action; every action's key reached the platform. Answers how many actions were claimed
 * again (attempts > 1) and how many repeats of a key the platform answered from its record.
 */
export async function checkExactlyOnce(c: Cluster, tasks: WarmingTask[]): Promise<{ reclaimed: number; replays: number }> {
  for (const t of tasks) {
    assert.equal(WarmingStatus[t.status], "COMPLETED", `task ${t.id}: ${t.error}`);
    assert.deepEqual([t.actionsCompleted, t.actionsFailed], [PER_TASK, 0], `task ${t.id}`);
  }
  const ids = tasks.map((t) => t.id);
  const actions = await c.db.query<{ key: string; status: string; attempts: number }>("SELECT key, status, attempts FROM warming_actions WHERE task_id = ANY($1::text[])", [ids]);
  assert.equal(actions.rows.length, ids.length * PER_TASK);
  assert.deepEqual(actions.rows.filter((a) => a.status !== "done").slice(0, 5), []);
  const events = await c.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM warming_events WHERE event_type = 'action_completed' AND task_id = ANY($1::text[]) GROUP BY task_id, data->>'seq'",
    [ids],
  );
  assert.equal(events.rows.length, ids.length * PER_TASK, "an action_completed event per planned action");
  assert.deepEqual(events.rows.filter((r) => r.n !== 1), [], "no action completed twice");
  const seen = c.sandbox.state().platforms.vk.idempotency;
  const missing = actions.rows.filter((a) => !seen[a.key]);
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} planned actions never reached the platform`);
  return { reclaimed: actions.rows.filter((a) => a.attempts > 1).length, replays: actions.rows.reduce((n, a) => n + seen[a.key].replays, 0) };
}

/** LIKE pattern of the logins `<prefix>_<i>`. */
const loginsOf = (prefix: string) => `${prefix}\\_%`;

/** One VK registration of `login` through `via` (a proxy in RU, a number from the sandbox's SMS service). */
export function registerVk(via: Host, login: string): ReturnType<Host["vk"]["register"]> {
  return via.vk.register({ login, firstName: "Reg", lastName: "Test", proxyCountry: "RU", platformFields: { birth_date: "1990-01-02", gender: "female" } }, { timeoutMs: 60_000 });
}

/** What a caller of Register saw: the answer, or the error its call ended with. */
export type RegisterOutcome = Awaited<ReturnType<Host["vk"]["register"]>> | Error;

/**
 * n VK registrations (logins `<prefix>_<i>`) through `via`; resolves once one of them waits for its
 * SMS code (set the sandbox's codeDelayMs so the code comes late), with the callers' outcomes to come.
 */
export async function registrationsWaiting(c: Cluster, via: Host, prefix: string, n = 3): Promise<{ outcomes: Promise<RegisterOutcome[]> }> {
  const calls = Array.from({ length: n }, (_, i) => registerVk(via, `${prefix}_${i}`).catch((e: Error) => e));
  const waiting = "SELECT 1 FROM registrations WHERE status = 'running' AND step = 'wait_code' AND login LIKE $1";
  await eventually(async () => (await c.db.query(waiting, [loginsOf(prefix)])).rows.length > 0, 20_000, `a ${prefix} registration waiting for its code`);
  return { outcomes: Promise.all(calls) };
}

/**
 * Registrations whose host was lost mid-way (cut or killed while they waited for their code):
 * none is left running, at least one was taken over and undone by another host ("interrupted at
 * <step>"), and the record agrees with what each caller saw (the lost host's late steps did not
 * overwrite the clean-up). Answers the rows, for the test's log.
 */
export async function checkRegistrationsTakenOver(c: Cluster, prefix: string, outcomes: RegisterOutcome[]): Promise<{ login: string; status: string; failed_step: string; error: string }[]> {
  const like = loginsOf(prefix);
  await eventually(async () => (await c.db.query("SELECT 1 FROM registrations WHERE status = 'running' AND login LIKE $1", [like])).rows.length === 0, 60_000, `no ${prefix} registration left running`);
  const rows = (await c.db.query<{ login: string; status: string; failed_step: string; error: string }>("SELECT login, status, failed_step, error FROM registrations WHERE login LIKE $1 ORDER BY login", [like])).rows;
  assert.equal(rows.length, outcomes.length);
  assert.ok(rows.some((r) => /^interrupted at /.test(r.error)), `a lost registration was cleaned up by another host: ${JSON.stringify(rows)}`);
  for (const [i, r] of rows.entries()) {
    const res = outcomes[i];
    if (!(res instanceof Error) && res.success) assert.equal(r.status, "succeeded", r.login);
    if (/^interrupted at /.test(r.error)) assert.ok(res instanceof Error || !res.success, `${r.login}: cleaned up by another host, yet its caller was told it succeeded`);
  }
  return rows;
}

/** The callers' outcomes in a few words each, for a test's log. */
export function describeOutcomes(outcomes: RegisterOutcome[]): string {
  return outcomes.map((r) => (r instanceof Error ? r.message.slice(0, 60) : r.success ? "ok" : `failed at ${r.failedStep}`)).join("; ");
}

/**
 * Nothing left held: no registration still running, no SMS activation still open (PENDING,
 * WAITING_CODE, CODE_RECEIVED), no proxy allocated to an account that is not ACTIVE or WARMING,
 * and every proxy's allocated count equal to its allocations.
 */
export async function checkNothingHeld(c: Cluster): Promise<void> {
  const running = await c.db.query<{ id: string; step: string }>("SELECT id, step FROM registrations WHERE status = 'running'");
  assert.deepEqual(running.rows, [], "registrations still running");
  const open = await c.db.query<{ id: string; status: number }>("SELECT id, status FROM sms_activations WHERE status IN (1, 2, 3)");
  assert.deepEqual(open.rows, [], "SMS activations still open");
  const stray = await c.db.query<{ account_id: string; status: number }>(
    "SELECT a.account_id, acc.status FROM proxy_allocations a JOIN accounts acc ON acc.id = a.account_id WHERE acc.status NOT IN (2, 3)",
  );
  assert.deepEqual(stray.rows, [], "proxies held by accounts that are neither ACTIVE nor WARMING");
  const drift = await c.db.query("SELECT p.id, p.allocated FROM proxies p WHERE p.allocated <> (SELECT count(*) FROM proxy_allocations a WHERE a.proxy_id = p.id)");
  assert.deepEqual(drift.rows, [], "a proxy's allocated count differs from its allocations");
}
