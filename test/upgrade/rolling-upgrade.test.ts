/**
 * Upgrades on a running cluster.
 * - The schema contract, on the migration files: every migration that breaks code still running
 *   on the schema (rollingUpgradeHazards: a text check for DROP, RENAME, a type change, SET NOT
 *   NULL, a NOT NULL column without a default) is named in docs/operations.md as needing every
 *   host stopped; the migrations the previous release lacks are listed.
 * - A rolling upgrade on one PostgreSQL database: the previous release (the commit pinned in
 *   test/upgrade/previous-release, checked out with `git worktree`) runs `conveer start` on a
 *   fresh database and makes data through real gRPC clients (accounts with credentials, proxies,
 *   warming tasks, a registration); the new code starts beside it on the same database, applying
 *   the migrations the old release lacks while it runs; both serve the same data and take
 *   traffic; the old host is stopped (SIGTERM) and the new one finishes the warming: every planned
 *   action reached the platform and was recorded once, every task completed once.
 * - `conveer migrate --check` and `conveer migrate`, on PostgreSQL and on the embedded store.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { AccountStatus } from "../../src/gen/conveer/v1/account_pb.js";
import { WarmingStatus } from "../../src/gen/conveer/v1/warming_pb.js";
import type { Db } from "../../src/store/db.ts";
import { loadMigrations, rollingUpgradeHazards as hazardsIn, uniqueIndexesOf } from "../../src/store/migrate.ts";

/** The rolling-upgrade hazards of a migration, knowing every unique index this release creates. */
const UNIQUE = uniqueIndexesOf(await loadMigrations());
const rollingUpgradeHazards = (sql: string) => hazardsIn(sql, UNIQUE);
import { openPostgres } from "../../src/store/postgres.ts";
import { ROOT, runCli, terminate } from "../support/cli.ts";
import { eventually } from "../support/grpc.ts";
import { dropPostgresDatabase, emptyPostgresDatabase } from "../support/store.ts";
import { checkBooks, setUp, startAll, waitEnded } from "../support/warming-system.ts";
import type { Setup } from "../support/warming-system.ts";

const git = async (...args: string[]) => (await promisify(execFile)("git", args, { cwd: ROOT })).stdout;

/** The pinned previous release's full commit hash; fails (never skips) when this clone lacks it. */
async function previousRelease(): Promise<string> {
  const pin = (await readFile(join(ROOT, "test/upgrade/previous-release"), "utf8")).split("\n").find((l) => l.trim() && !l.startsWith("#"))?.trim() ?? "";
  try {
    return (await git("rev-parse", "--verify", `${pin}^{commit}`)).trim();
  } catch {
    const shallow = (await git("rev-parse", "--is-shallow-repository").catch(() => "")).trim() === "true";
    throw new Error(
      `the previous release ${JSON.stringify(pin)} (test/upgrade/previous-release) is not in this clone: ${shallow ? "the clone is shallow, fetch its history (git fetch --unshallow)" : "fetch it, or fix the pin"}; the rolling-upgrade test needs it`,
    );
  }
}

/** The migration names ("NNN_name") in a commit's tree. */
async function migrationsAt(commit: string): Promise<string[]> {
  const files = (await git("ls-tree", "--name-only", commit, "src/store/migrations/")).split("\n");
  return files.map((f) => /([^/]+)\.sql$/.exec(f)?.[1]).filter((n): n is string => Boolean(n));
}

/** The migrations this code has that `commit` lacks. */
async function newSince(commit: string) {
  const old = new Set(await migrationsAt(commit));
  return (await loadMigrations()).filter((m) => !old.has(m.name));
}

describe("the schema contract of a rolling upgrade", () => {
  test("every migration that breaks code still running on the schema is called out in docs/operations.md as needing every host stopped", async () => {
    const notes = (await readFile(join(ROOT, "docs/operations.md"), "utf8")).split("\n");
    const calledOut = (name: string) => notes.some((l) => l.includes(`\`${name}\``) && /needs every host stopped/i.test(l));
    const flagged = (await loadMigrations()).filter((m) => rollingUpgradeHazards(m.sql).length > 0);
    // The check finds what it is for: 010 renamed credential_audit and dropped three of its columns.
    assert.ok(flagged.some((m) => m.name === "010_audit_log"), "010_audit_log (RENAME, DROP COLUMN) is flagged");
    const silent = flagged.filter((m) => !calledOut(m.name));
    assert.deepEqual(
      silent.map((m) => ({ migration: m.name, hazards: rollingUpgradeHazards(m.sql) })),
      [],
      "a migration that drops, renames, retypes or adds a NOT NULL column without a default breaks the previous release's hosts during a rolling upgrade: " +
        "make it additive (add the new column or table beside the old one; drop the old one a release later), or name it in docs/operations.md's release notes with `NNN_name` and 'needs every host stopped'",
    );
    const commit = await previousRelease();
    const fresh = await newSince(commit);
    console.log(`# migrations since the previous release ${commit.slice(0, 12)}: ${fresh.map((m) => `${m.name} (${rollingUpgradeHazards(m.sql).length ? "needs every host stopped" : "additive"})`).join(", ") || "none"}`);
  });

  test("rollingUpgradeHazards reads each statement", () => {
    assert.deepEqual(rollingUpgradeHazards("CREATE TABLE t (a int NOT NULL);\nALTER TABLE t ADD COLUMN b text NOT NULL DEFAULT '';\n-- DROP TABLE t;\nCREATE INDEX t_b ON t (b);"), []);
    assert.deepEqual(rollingUpgradeHazards("DROP INDEX t_b;"), [], "an index dropped breaks no query");
    const unique = uniqueIndexesOf([{ sql: "CREATE UNIQUE INDEX t_key ON t (a);\nCREATE INDEX t_b ON t (b);" }]);
    assert.deepEqual([...unique], ["t_key"]);
    assert.deepEqual(hazardsIn("DROP INDEX IF EXISTS t_b, public.t_key;", unique).map((h) => h.split(":")[0]), ["drops a unique index"], "an older host's ON CONFLICT may name it");
    assert.deepEqual(hazardsIn("DROP INDEX t_b;", unique), []);
    assert.deepEqual(rollingUpgradeHazards("ALTER TABLE t DROP COLUMN b;\nDROP TABLE t;").map((h) => h.split(":")[0]), ["drops", "drops"]);
    assert.deepEqual(
      rollingUpgradeHazards("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0, ADD COLUMN d int NOT NULL;\nALTER TABLE t ALTER COLUMN a TYPE bigint;\nALTER TABLE t ALTER COLUMN b SET NOT NULL;").map((h) => h.split(":")[0]),
      ["adds a NOT NULL column without a default", "changes a column's type", "makes a column NOT NULL"],
    );
  });
});

/** `conveer migrate ARGS` (this code) on a store; answers its exit code and stdout. */
async function conveerMigrate(args: string[], env: Record<string, string>): Promise<{ code: number | string; out: string }> {
  const c = runCli(["migrate", ...args], env);
  const code = await c.exited;
  assert.equal(c.stderr(), "", `conveer migrate ${args.join(" ")} printed on stderr`);
  return { code, out: c.stdout() };
}

describe("conveer migrate --check on the embedded store", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "conveer-migrate-check-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("lists every migration pending and applies nothing; conveer migrate applies them; the check then finds none pending", async () => {
    const env = { CONVEER_DATA_DIR: dir };
    const all = await loadMigrations();
    const dry = await conveerMigrate(["--check"], env);
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /^pending {2}010_audit_log {2}NEEDS EVERY HOST STOPPED\n {11}renames: ALTER TABLE credential_audit RENAME TO audit_log;$/m);
    assert.match(dry.out, /^pending {2}015_warming_traceparent {2}additive: safe while older hosts run$/m);
    assert.match(dry.out, /^pending {2}016_warming_due {2}NEEDS EVERY HOST STOPPED\n {11}drops: ALTER TABLE warming_tasks DROP COLUMN run_at;$/m);
    const flagged = all.filter((m) => rollingUpgradeHazards(m.sql).length > 0).length;
    assert.match(dry.out, new RegExp(`^0 applied, ${all.length} pending \\(${flagged} need every host stopped\\); nothing was applied \\(--check\\)$`, "m"));
    const wet = await conveerMigrate([], env);
    assert.equal(wet.code, 0);
    assert.deepEqual(wet.out.trim().split("\n"), all.map((m) => `applied  ${m.name}`));
    const after = await conveerMigrate(["--check"], env);
    assert.match(after.out, new RegExp(`^${all.length} applied, 0 pending; nothing was applied`, "m"));
    assert.doesNotMatch(after.out, /^pending/m);
    assert.equal((await conveerMigrate([], env)).out, "nothing to apply: the store is up to date\n");
  });
});

describe("rolling upgrade from the previous release on one PostgreSQL database", { skip: process.env.CONVEER_TEST_DATABASE_URL ? false : "CONVEER_TEST_DATABASE_URL is not set: the old and the new code share one PostgreSQL database" }, () => {
  let commit: string;
  let tree: string | undefined;
  let url: string | undefined;
  let s: Setup | undefined;
  let db: Db | undefined;
  before(async () => {
    commit = await previousRelease();
    tree = await mkdtemp(join(tmpdir(), "conveer-previous-"));
    await git("worktree", "add", "--detach", tree, commit);
    await symlink(join(ROOT, "node_modules"), join(tree, "node_modules"));
    url = await emptyPostgresDatabase("conveer_upgrade_");
    // Short warming leases: actions the stopped host held (if any) are taken over within 1.5 s.
    s = await setUp({ databaseUrl: url }, { CONVEER_WARMING_LEASE_MS: "1500" });
    db = openPostgres({ url, max: 2 });
  });
  after(async () => {
    await db?.close();
    await s?.close();
    if (url) await dropPostgresDatabase(url);
    if (tree) {
      await git("worktree", "remove", "--force", tree).catch((err: Error) => console.log(`# git worktree remove: ${err.message}`));
      await rm(tree, { recursive: true, force: true });
    }
  });

  test("the old host runs on the new schema beside the new one, or, when a pending migration needs every host stopped, is stopped first; the new one serves the old one's data and finishes its work", { timeout: 120_000 }, async () => {
    const versions = async () => (await db!.query<{ name: string }>("SELECT name FROM schema_migrations ORDER BY version")).rows.map((r) => r.name);
    const old = await s!.start("old", undefined, {}, { argv: [process.execPath, join(tree!, "src/cli/main.ts")], cwd: tree! });
    assert.deepEqual(await versions(), await migrationsAt(commit), "the old host migrated the empty database to its own schema");

    // Data through the old host: accounts with credentials, proxies, warming tasks, a registration.
    const accountIds = await s!.accounts(old, 20, "up");
    const firstTasks = await startAll([old], accountIds.slice(0, 8));
    const regOld = await old.vk.register({ login: "upgrade_old" }, { timeoutMs: 30_000 });
    assert.ok(regOld.success, `${regOld.failedStep}: ${regOld.error}`);

    // The new code's dry run on the previous release's schema: pending = what the release lacks.
    const fresh = await newSince(commit);
    const check = await conveerMigrate(["--check"], { DATABASE_URL: url!, CONVEER_DATA_DIR: join(s!.dir, "check") });
    assert.equal(check.code, 0);
    assert.match(check.out, new RegExp(`^${(await migrationsAt(commit)).length} applied, ${fresh.length} pending`, "m"));
    assert.deepEqual(await versions(), await migrationsAt(commit), "--check applied nothing");
    const stopFirst = fresh.filter((m) => rollingUpgradeHazards(m.sql).length > 0);
    for (const m of stopFirst) assert.match(check.out, new RegExp(`^pending {2}${m.name} {2}NEEDS EVERY HOST STOPPED$`, "m"));

    const steps = { old, accountIds, firstTasks, regOld };
    const r = stopFirst.length > 0 ? await upgradeStopped(steps) : await upgradeRolling(steps);
    assert.deepEqual(await versions(), (await loadMigrations()).map((m) => m.name));

    // The new host finishes every task, the ones the old host started and left included.
    const { neu, ids } = r;
    const tasks = await waitEnded(neu.warming, ids, 60_000);
    assert.ok((await neu.workerActions()).recorded > r.recordedAtStop, "the new host recorded the actions left when the old one stopped");
    const books = await checkBooks(db!, s!, tasks);
    assert.ok(books.replays <= books.reclaimed, `repeats at the platform (${books.replays}) are at most the re-claimed actions (${books.reclaimed})`);
    const ended = await db!.query<{ task_id: string; n: number }>(
      "SELECT task_id, count(*)::int AS n FROM warming_events WHERE event_type = 'status_changed' AND data->>'to' = 'WARMING_STATUS_COMPLETED' AND task_id = ANY($1::text[]) GROUP BY 1",
      [ids],
    );
    assert.deepEqual(ended.rows.filter((x) => x.n !== 1), [], "no task completed twice");
    assert.equal(ended.rows.length, ids.length, "every task completed");
    // The new host alone still serves what the old one made.
    assert.equal((await neu.accounts.getCredentials({ accountId: accountIds[0] })).password, "pw-up-0");
    const how = stopFirst.length > 0 ? `every host stopped first (${stopFirst.map((m) => m.name).join(", ")})` : "rolling";
    console.log(`# ${how}: ${ids.length} tasks; old host stopped with ${r.running} running; ${books.reclaimed} actions re-claimed, ${books.replays} repeats answered from their keys`);
  });

  type Host = Awaited<ReturnType<Setup["start"]>>;
  type Steps = { old: Host; accountIds: string[]; firstTasks: string[]; regOld: { accountId: string; registrationId: string } };
  type Upgraded = { neu: Host; ids: string[]; running: number; recordedAtStop: number };

  /** How many of the tasks still run (through `via`). */
  const runningOf = async (via: Host, ids: string[]) => (await Promise.all(ids.map((taskId) => via.warming.getWarmingStatus({ taskId })))).filter((t) => t.status === WarmingStatus.RUNNING).length;

  /** The new host starts beside the old one (additive migrations), both take traffic, then the old one stops. */
  async function upgradeRolling({ old, accountIds, firstTasks, regOld }: Steps): Promise<Upgraded> {
    const recordedByOld = (await old.workerActions()).recorded;
    const neu = await s!.start("new");
    assert.ok(old.cli.running(), `the old host exited:\n${old.cli.stderr()}`);

    // Both serve the same data (accounts no task is changing now, the registration's account).
    for (const accountId of [...accountIds.slice(8), regOld.accountId]) {
      assert.deepEqual(await neu.accounts.getAccount({ accountId }), await old.accounts.getAccount({ accountId }));
      assert.deepEqual(await neu.accounts.getCredentials({ accountId }), await old.accounts.getCredentials({ accountId }));
    }
    assert.deepEqual(await neu.vk.getRegistration({ registrationId: regOld.registrationId }), await old.vk.getRegistration({ registrationId: regOld.registrationId }));

    // Traffic to both: what one writes the other reads.
    const byNew = await neu.accounts.createAccount({ platform: "vk", login: "made_by_new", password: "pw-new" });
    assert.equal((await old.accounts.getCredentials({ accountId: byNew.id })).password, "pw-new");
    assert.deepEqual(await old.accounts.getAccount({ accountId: byNew.id }), byNew);
    const byOld = await old.accounts.createAccount({ platform: "vk", login: "made_by_old", password: "pw-old" });
    assert.equal((await neu.accounts.getCredentials({ accountId: byOld.id })).password, "pw-old");
    const regNew = await neu.vk.register({ login: "upgrade_new" }, { timeoutMs: 30_000 });
    assert.ok(regNew.success, `${regNew.failedStep}: ${regNew.error}`);
    assert.equal((await old.accounts.getAccount({ accountId: regNew.accountId })).status, AccountStatus.ACTIVE);
    assert.deepEqual(await old.vk.getRegistration({ registrationId: regNew.registrationId }), await neu.vk.getRegistration({ registrationId: regNew.registrationId }));

    // Warming started through both; both workers record actions on the new schema.
    const moreTasks = await startAll([old, neu], accountIds.slice(8));
    await eventually(async () => (await old.workerActions()).recorded > recordedByOld && (await neu.workerActions()).recorded > 0, 30_000, "both hosts' workers to record actions");

    // The old host stops while tasks run; the new one finishes them.
    const ids = [...firstTasks, ...moreTasks];
    const running = await runningOf(neu, ids);
    assert.ok(running > 0, "tasks still run when the old host stops");
    assert.equal((await terminate(old.cli)).code, 0, old.cli.stderr());
    return { neu, ids, running, recordedAtStop: (await neu.workerActions()).recorded };
  }

  /**
   * A pending migration needs every host stopped: the old host stops (SIGTERM, while its tasks
   * run), then the new code starts on the same database, applies the migrations and serves what
   * the old host served (read before it stopped), takes new work and finishes the old host's.
   */
  async function upgradeStopped({ old, accountIds, firstTasks, regOld }: Steps): Promise<Upgraded> {
    const served = async (via: Host) => ({
      accounts: await Promise.all([...accountIds.slice(8), regOld.accountId].map(async (accountId) => [await via.accounts.getAccount({ accountId }), await via.accounts.getCredentials({ accountId })])),
      registration: await via.vk.getRegistration({ registrationId: regOld.registrationId }),
    });
    const byOld = await old.accounts.createAccount({ platform: "vk", login: "made_by_old", password: "pw-old" });
    const before = await served(old);
    const running = await runningOf(old, firstTasks);
    assert.ok(running > 0, "tasks still run when the old host stops");
    assert.equal((await terminate(old.cli)).code, 0, old.cli.stderr());

    const neu = await s!.start("new");
    const recordedAtStop = 0;
    assert.deepEqual(await served(neu), before, "the new host serves what the old one served");
    assert.equal((await neu.accounts.getCredentials({ accountId: byOld.id })).password, "pw-old");
    const regNew = await neu.vk.register({ login: "upgrade_new" }, { timeoutMs: 30_000 });
    assert.ok(regNew.success, `${regNew.failedStep}: ${regNew.error}`);
    assert.equal((await neu.accounts.getAccount({ accountId: regNew.accountId })).status, AccountStatus.ACTIVE);
    const moreTasks = await startAll([neu], accountIds.slice(8));
    return { neu, ids: [...firstTasks, ...moreTasks], running, recordedAtStop };
  }
});
