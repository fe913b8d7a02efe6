import { recordAudit } from "../audit/audit-log.ts";
import { AccountStatus } from "../gen/conveer/v1/account_pb.js";
import type { Queryable, Transaction } from "../store/db.ts";

/** A proxies row, as stored. */
export type ProxyRow = {
  id: string;
  protocol: string;
  host: string;
  port: number;
  username: string;
  password_sealed: string;
  key_id: string;
  country: string;
  provider: string;
  tags: string[];
  capacity: number;
  allocated: number;
  healthy: boolean;
  consecutive_failures: number;
  last_checked_at: Date | null;
  last_latency_ms: number | null;
  last_error: string;
};

/** A proxy row with the allocation that brought it (for per-account answers). */
export type AllocatedRow = ProxyRow & { expires_at: Date; account_id: string };

const P = "p.id, p.protocol, p.host, p.port, p.username, p.password_sealed, p.key_id, p.country, p.provider, p.tags, p.capacity, p.allocated, p.healthy, p.consecutive_failures, p.last_checked_at, p.last_latency_ms, p.last_error";

/** Inserts a proxy; throws 23505 when the same protocol/host/port/username is already pooled. */
export async function insertProxy(q: Queryable, r: Omit<ProxyRow, "allocated" | "healthy" | "consecutive_failures" | "last_checked_at" | "last_latency_ms" | "last_error">): Promise<void> {
  await q.query(
    `INSERT INTO proxies (id, protocol, host, port, username, password_sealed, key_id, country, provider, tags, capacity)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [r.id, r.protocol, r.host, r.port, r.username, r.password_sealed, r.key_id, r.country, r.provider, r.tags, r.capacity],
  );
}

/** One proxy by id. */
export async function getProxy(q: Queryable, id: string): Promise<ProxyRow | undefined> {
  return (await q.query<ProxyRow>(`SELECT ${P} FROM proxies p WHERE p.id = $1`, [id])).rows[0];
}

/** One proxy by id, locked until the transaction ends. */
export async function lockProxy(tx: Transaction, id: string): Promise<ProxyRow | undefined> {
  return (await tx.query<ProxyRow>(`SELECT ${P} FROM proxies p WHERE p.id = $1 FOR UPDATE`, [id])).rows[0];
}

/** Takes a proxy out of rotation: no new allocation lands on it. */
export async function markUnhealthy(q: Queryable, id: string): Promise<void> {
  await q.query("UPDATE proxies SET healthy = false WHERE id = $1", [id]);
}

const ALLOCATION = `SELECT ${P}, a.expires_at, a.account_id FROM proxy_allocations a JOIN proxies p ON p.id = a.proxy_id WHERE a.account_id = $1`;

/** The account's allocation joined with its proxy. */
export async function allocationOf(q: Queryable, accountId: string): Promise<AllocatedRow | undefined> {
  return (await q.query<AllocatedRow>(ALLOCATION, [accountId])).rows[0];
}

/** The account's allocation joined with its proxy, the allocation locked until the transaction ends. */
export async function lockAllocation(tx: Transaction, accountId: string): Promise<AllocatedRow | undefined> {
  return (await tx.query<AllocatedRow>(`${ALLOCATION} FOR UPDATE OF a`, [accountId])).rows[0];
}

/** Who is shown a proxy's password: recorded in the audit log (proxy_password.read) with every read. */
export type SecretReader = { tokenName: string; peer: string };

/** A proxy-password read to audit: whose allocation, read by whom. */
export type AuditedAllocationRead = { accountId: string; reader: SecretReader };

/**
 * The allocations of several accounts joined with their proxies, and in the same statement (one
 * round trip, one snapshot) an audit record of each password read when the proxy has a password,
 * in the order asked: a batch of GetProxyForAccount calls costs one statement.
 */
export async function allocationsOfAudited(q: Queryable, reads: readonly AuditedAllocationRead[]): Promise<Map<AuditedAllocationRead, AllocatedRow>> {
  const r = await q.query<AllocatedRow>(
    `WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(account_id, actor, peer, ord)),
     cur AS (SELECT ${P}, a.expires_at, a.account_id FROM proxy_allocations a JOIN proxies p ON p.id = a.proxy_id WHERE a.account_id = ANY($1::text[])),
     audit AS (INSERT INTO audit_log (account_id, actor, peer, action, target)
       SELECT k.account_id, k.actor, k.peer, 'proxy_password.read', cur.id FROM k JOIN cur ON cur.account_id = k.account_id WHERE cur.password_sealed <> '' ORDER BY k.ord)
     SELECT * FROM cur`,
    [reads.map((x) => x.accountId), reads.map((x) => x.reader.tokenName), reads.map((x) => x.reader.peer)],
  );
  const byAccount = new Map(r.rows.map((row) => [row.account_id, row]));
  return new Map(reads.flatMap((x) => (byAccount.has(x.accountId) ? [[x, byAccount.get(x.accountId) as AllocatedRow]] : [])));
}

/** Records that `reader` was shown the password of proxy `proxyId` (allocated to `accountId`). */
export async function insertPasswordAudit(q: Queryable, accountId: string, proxyId: string, reader: SecretReader): Promise<void> {
  await recordAudit(q, { name: reader.tokenName, peer: reader.peer }, { action: "proxy_password.read", accountId, target: proxyId });
}

/** What a pick should prefer and avoid. */
export type Pick = { country: string; provider: string; exclude: string };

/**
 * Takes one slot on the best free healthy proxy: preferred country and provider first, then the
 * least loaded. SKIP LOCKED first lets concurrent allocators (any replica) take different proxies
 * instead of queueing; but a proxy locked by another allocator may still have free slots, so when
 * every candidate is locked, the pick waits for the lock and re-checks the slot (retrying with the
 * next candidate when it was taken meanwhile). Only "no healthy proxy has a free slot" is
 * undefined. The CHECK on `allocated <= capacity` makes over-allocation impossible.
 */
export async function takeSlot(q: Queryable, pick: Pick): Promise<ProxyRow | undefined> {
  const params: unknown[] = [pick.exclude];
  const free = "healthy AND allocated < capacity AND id <> $1";
  const order = freeOrder(pick, params);
  const fast = await q.query<ProxyRow>(
    `UPDATE proxies p SET allocated = p.allocated + 1
     WHERE p.id = (SELECT id FROM proxies WHERE ${free} ${order} LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING ${P}`,
    params,
  );
  if (fast.rows[0]) return fast.rows[0];
  for (let attempt = 0; attempt < 100; attempt++) {
    // A fresh snapshot per statement (READ COMMITTED): sees the slots other allocators took and committed.
    const candidate = await q.query<{ id: string }>(`SELECT id FROM proxies WHERE ${free} ${order} LIMIT 1`, params);
    if (!candidate.rows[0]) return undefined;
    // Waits for a concurrent holder of the row, then re-checks the slot on the committed version.
    const r = await q.query<ProxyRow>(
      `UPDATE proxies p SET allocated = p.allocated + 1 WHERE p.id = $1 AND p.healthy AND p.allocated < p.capacity RETURNING ${P}`,
      [candidate.rows[0].id],
    );
    if (r.rows[0]) return r.rows[0];
  }
  return undefined;
}

/** What an allocation in one statement asks for; `reader`: the caller shown the password (audited). */
export type AllocateAsk = { accountId: string; platform: string; leaseMs: number; country: string; provider: string; reader?: SecretReader };

/** A proxy answered by allocateInOne, with the lease and whether it was the account's already. */
export type AllocatedOne = ProxyRow & { expires_at: Date; renewed: boolean };

/**
 * AllocateProxy's common cases in one statement (one round trip, one transaction): an account
 * already on a healthy proxy renews its lease; an account without one takes a slot on the best
 * free healthy proxy (preferred country and provider first, then the least loaded; SKIP LOCKED, so
 * concurrent allocators on any replica take different proxies) and its allocation is inserted. The
 * audit record of a password read is written in the same statement. Undefined when neither case
 * applies: the account is on an unhealthy proxy, every free proxy was locked by another allocator,
 * the pool is full, or a concurrent call for the same account inserted its allocation first (ON
 * CONFLICT DO NOTHING: then no slot is taken); the caller then takes the locking path.
 * The slot is taken only when the insert went in, the picked row stays locked until the statement
 * commits, and the CHECK on `allocated <= capacity` makes over-allocation impossible.
 * No slot is taken for an account whose row says DELETED: the row is share-locked (FOR SHARE, which
 * any UPDATE of the row waits for, and which waits for one in flight; KEY SHARE would not, and would
 * read the old status past an uncommitted plain UPDATE), so a DeleteAccount marking it meanwhile
 * either waits for this statement (and then finds the allocation to release) or commits first (and
 * this statement sees DELETED): an AllocateProxy whose account read came before the mark cannot
 * leave a slot behind. Accounts without a row (tests'
 * stand-in AccountService) are not refused here.
 */
export async function allocateInOne(q: Queryable, a: AllocateAsk): Promise<AllocatedOne | undefined> {
  const params: unknown[] = [a.accountId, a.leaseMs, a.platform, Boolean(a.reader), a.reader?.tokenName ?? "", a.reader?.peer ?? ""];
  const order = freeOrder(a, params);
  let sql = allocateSql.get(order);
  if (!sql) allocateSql.set(order, (sql = allocateStatement(order)));
  return (await q.query<AllocatedOne>(sql, params)).rows[0];
}

/** allocateInOne's statement by its pick order (one text per preference shape, built once). */
const allocateSql = new Map<string, string>();

function allocateStatement(order: string): string {
  const lease = "now() + $2 * interval '1 millisecond'";
  return `WITH cur AS (SELECT 1 FROM proxy_allocations WHERE account_id = $1),
     acc AS (SELECT status FROM accounts WHERE id = $1 FOR SHARE),
     renewed AS (
       UPDATE proxy_allocations a SET expires_at = ${lease} FROM proxies p
       WHERE a.account_id = $1 AND p.id = a.proxy_id AND p.healthy
       RETURNING ${P}, a.expires_at, true AS renewed),
     pick AS (
       SELECT id FROM proxies WHERE healthy AND allocated < capacity AND NOT EXISTS (SELECT 1 FROM cur)
         AND NOT EXISTS (SELECT 1 FROM acc WHERE status = ${AccountStatus.DELETED})
       ${order} LIMIT 1 FOR UPDATE SKIP LOCKED),
     ins AS (
       INSERT INTO proxy_allocations (account_id, proxy_id, platform, expires_at) SELECT $1, id, $3, ${lease} FROM pick
       ON CONFLICT (account_id) DO NOTHING RETURNING proxy_id, expires_at),
     took AS (
       UPDATE proxies p SET allocated = p.allocated + 1 FROM ins WHERE p.id = ins.proxy_id
       RETURNING ${P}, ins.expires_at, false AS renewed),
     got AS (SELECT * FROM renewed UNION ALL SELECT * FROM took),
     audit AS (
       INSERT INTO audit_log (account_id, actor, peer, action, target)
       SELECT $1, $5, $6, 'proxy_password.read', id FROM got WHERE $4 AND password_sealed <> '')
     SELECT * FROM got`;
}

/**
 * The order free proxies are picked in: preferred country and provider first (only when asked
 * for: without a preference the order is the proxies_free index's, so the pick reads one entry
 * instead of sorting the free pool), then the least loaded.
 */
function freeOrder(prefer: { country: string; provider: string }, params: unknown[]): string {
  return `ORDER BY ${[...preferKeys(prefer, params, ""), "allocated", "id"].join(", ")}`;
}

/** The preference part of a pick order, on the columns of table alias `t` ("" for none). */
function preferKeys(prefer: { country: string; provider: string }, params: unknown[], t: string): string[] {
  return [...(prefer.country ? [`(${t}country = $${params.push(prefer.country)}) DESC`] : []), ...(prefer.provider ? [`(${t}provider = $${params.push(prefer.provider)}) DESC`] : [])];
}

/**
 * Asks in account id order: a batch's statement then takes its row locks (allocations, accounts)
 * in that order, as every batch does, so two batches sharing accounts wait for one another
 * rather than deadlock.
 */
function byAccount<T extends { accountId: string }>(asks: readonly T[]): T[] {
  return [...asks].sort((a, b) => (a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : 0));
}

/**
 * allocateInOne for many accounts in one statement (asks of one preference shape and lease, one
 * ask per account): the accounts already on a healthy proxy renew their lease, the rest each take
 * a slot. The slots are the free capacity of the best free healthy proxies expanded into one row
 * per free slot (a proxy with `allocated` a has slots a, a+1, …), ordered like a single pick
 * (preferred country and provider first, then the slot's load, then the id) and paired with the
 * asks by row number: N asks in a row would have taken the same slots one by one. The candidate
 * proxies are locked FOR UPDATE SKIP LOCKED (at most as many as there are asks: the best N
 * proxies hold the N best slots), the accounts' rows share-locked in id order as allocateInOne
 * does (a DELETED account takes no slot), the allocations inserted in account order (ON CONFLICT
 * DO NOTHING: an account a concurrent call inserted first takes no slot), each proxy's counter
 * raised once by its share of the inserts, and each answered password read audited. The counter
 * is set from the value the lock read (the row's latest version, which the lock keeps), not from
 * `p.allocated`: the UPDATE first computes its new row from the row of the statement's snapshot,
 * and when a concurrent release committed after the snapshot, the CHECK on that row (old count +
 * slots freed since) would fail the whole batch before the UPDATE moved on to the latest version. Answers the
 * asks it served by account id; an ask it did not serve (on an unhealthy proxy, DELETED, no slot
 * left among the unlocked candidates, a concurrent insert) is absent, and its caller takes the
 * one-ask path, which answers exactly as before (renewal, FAILED_PRECONDITION, RESOURCE_EXHAUSTED).
 */
export async function allocateMany(q: Queryable, unordered: readonly AllocateAsk[], prefer: { country: string; provider: string }, leaseMs: number): Promise<Map<string, AllocatedOne>> {
  const asks = byAccount(unordered);
  const params: unknown[] = [
    asks.map((a) => a.accountId),
    asks.map((a) => a.platform),
    asks.map((a) => Boolean(a.reader)),
    asks.map((a) => a.reader?.tokenName ?? ""),
    asks.map((a) => a.reader?.peer ?? ""),
    leaseMs,
  ];
  const keys = preferKeys(prefer, params, "c.");
  const r = await q.query<AllocatedOne & { account_id: string }>(allocateManyStatement(keys), params);
  return new Map(r.rows.map((row) => [row.account_id, row]));
}

function allocateManyStatement(prefer: string[]): string {
  const lease = "now() + $6 * interval '1 millisecond'";
  const slotOrder = [...prefer, "c.allocated + g.i", "c.id"].join(", ");
  const candOrder = [...prefer, "c.allocated", "c.id"].join(", ");
  return `WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[]) WITH ORDINALITY AS k(account_id, platform, audited, actor, peer, ord)),
     cur AS (SELECT account_id FROM proxy_allocations WHERE account_id = ANY($1::text[])),
     acc AS (SELECT id, status FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE),
     renewed AS (
       UPDATE proxy_allocations a SET expires_at = ${lease} FROM proxies p
       WHERE a.account_id = ANY($1::text[]) AND p.id = a.proxy_id AND p.healthy
       RETURNING ${P}, a.expires_at, true AS renewed, a.account_id),
     want AS (
       SELECT k.account_id, k.platform, row_number() OVER (ORDER BY k.ord) AS n FROM k
       WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.account_id = k.account_id)
         AND NOT EXISTS (SELECT 1 FROM acc WHERE acc.id = k.account_id AND acc.status = ${AccountStatus.DELETED})),
     cand AS MATERIALIZED (
       SELECT c.id, c.allocated, c.capacity, c.country, c.provider FROM proxies c WHERE c.healthy AND c.allocated < c.capacity
       ORDER BY ${candOrder} LIMIT (SELECT count(*) FROM want) FOR UPDATE SKIP LOCKED),
     slot AS (
       SELECT c.id, row_number() OVER (ORDER BY ${slotOrder}) AS n
       FROM cand c, generate_series(0, least(c.capacity - c.allocated, (SELECT count(*) FROM want)) - 1) AS g(i)),
     ins AS (
       INSERT INTO proxy_allocations (account_id, proxy_id, platform, expires_at)
       SELECT w.account_id, s.id, w.platform, ${lease} FROM want w JOIN slot s ON s.n = w.n ORDER BY w.account_id
       ON CONFLICT (account_id) DO NOTHING RETURNING account_id, proxy_id, expires_at),
     took AS (
       UPDATE proxies p SET allocated = t.allocated + t.n
       FROM (SELECT cand.id, cand.allocated, count(*)::int AS n FROM ins JOIN cand ON cand.id = ins.proxy_id GROUP BY cand.id, cand.allocated) t
       WHERE p.id = t.id RETURNING ${P}),
     got AS (
       SELECT * FROM renewed
       UNION ALL SELECT took.*, ins.expires_at, false, ins.account_id FROM took JOIN ins ON ins.proxy_id = took.id),
     audit AS (
       INSERT INTO audit_log (account_id, actor, peer, action, target)
       SELECT k.account_id, k.actor, k.peer, 'proxy_password.read', got.id FROM got JOIN k ON k.account_id = got.account_id
       WHERE k.audited AND got.password_sealed <> '' ORDER BY k.ord)
     SELECT * FROM got`;
}

/** Ends an account's allocation (only on `proxyId` when given) and gives its slot back, in one statement; returns the proxy it held. */
export async function releaseAllocation(q: Queryable, accountId: string, proxyId = ""): Promise<string | undefined> {
  const r = await q.query<{ proxy_id: string }>(
    `WITH gone AS (DELETE FROM proxy_allocations WHERE account_id = $1 AND ($2 = '' OR proxy_id = $2) RETURNING proxy_id),
     freed AS (UPDATE proxies p SET allocated = p.allocated - 1 FROM gone WHERE p.id = gone.proxy_id)
     SELECT proxy_id FROM gone`,
    [accountId, proxyId],
  );
  return r.rows[0]?.proxy_id;
}

/** A release asked for as part of a batch (releaseMany): the account, and the proxy it must hold ("" for any). */
export type ReleaseAsk = { accountId: string; proxyId: string };

/**
 * releaseAllocation for many accounts in one statement (one ask per account): the allocations
 * deleted, and each proxy's counter lowered once by its share, its row locked first in id order
 * (so concurrent batches sharing proxies wait for one another instead of deadlocking) and the
 * counter set from the value that lock read (as allocateMany does). Answers
 * the proxy each released account held; an account that held none (or not `proxyId`) is absent.
 */
export async function releaseMany(q: Queryable, unordered: readonly ReleaseAsk[]): Promise<Map<string, string>> {
  const asks = byAccount(unordered);
  const r = await q.query<{ account_id: string; proxy_id: string }>(
    `WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(account_id, proxy_id)),
     gone AS (
       DELETE FROM proxy_allocations a USING k WHERE a.account_id = k.account_id AND (k.proxy_id = '' OR a.proxy_id = k.proxy_id)
       RETURNING a.account_id, a.proxy_id),
     lk AS (
       SELECT p.id, p.allocated, g.n FROM proxies p JOIN (SELECT proxy_id, count(*)::int AS n FROM gone GROUP BY proxy_id) g ON g.proxy_id = p.id
       ORDER BY p.id FOR UPDATE OF p),
     freed AS (UPDATE proxies p SET allocated = lk.allocated - lk.n FROM lk WHERE p.id = lk.id)
     SELECT account_id, proxy_id FROM gone`,
    [asks.map((a) => a.accountId), asks.map((a) => a.proxyId)],
  );
  return new Map(r.rows.map((row) => [row.account_id, row.proxy_id]));
}

/** Gives a slot back. */
export async function freeSlot(q: Queryable, proxyId: string): Promise<void> {
  await q.query("UPDATE proxies SET allocated = allocated - 1 WHERE id = $1", [proxyId]);
}

/**
 * Whether the account's row says DELETED, share-locking the row (FOR SHARE) for the rest of the transaction
 * (the locking path's counterpart of allocateInOne's check: a DeleteAccount marking it waits).
 */
export async function accountDeleted(q: Transaction, accountId: string): Promise<boolean> {
  const r = await q.query<{ status: number }>("SELECT status FROM accounts WHERE id = $1 FOR SHARE", [accountId]);
  return r.rows[0]?.status === AccountStatus.DELETED;
}

/** Records a new allocation; undefined when the account has one already (a concurrent call's, committed first). */
export async function insertAllocation(q: Queryable, accountId: string, proxyId: string, platform: string, leaseMs: number): Promise<Date | undefined> {
  const r = await q.query<{ expires_at: Date }>(
    "INSERT INTO proxy_allocations (account_id, proxy_id, platform, expires_at) VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond') ON CONFLICT (account_id) DO NOTHING RETURNING expires_at",
    [accountId, proxyId, platform, leaseMs],
  );
  return r.rows[0]?.expires_at;
}

/** Renews a lease, or moves it to another proxy. */
export async function updateAllocation(q: Queryable, accountId: string, proxyId: string, leaseMs: number): Promise<Date> {
  const r = await q.query<{ expires_at: Date }>(
    "UPDATE proxy_allocations SET proxy_id = $2, expires_at = now() + $3 * interval '1 millisecond' WHERE account_id = $1 RETURNING expires_at",
    [accountId, proxyId, leaseMs],
  );
  return r.rows[0].expires_at;
}

/** Deletes an allocation; returns the proxy it held. */
export async function deleteAllocation(q: Queryable, accountId: string, proxyId = ""): Promise<string | undefined> {
  const r = await q.query<{ proxy_id: string }>(
    "DELETE FROM proxy_allocations WHERE account_id = $1 AND ($2 = '' OR proxy_id = $2) RETURNING proxy_id",
    [accountId, proxyId],
  );
  return r.rows[0]?.proxy_id;
}

/** Deletes an account's allocation if its lease ran out (rechecked here: it may have been renewed); returns the proxy it held. */
export async function deleteExpiredAllocation(q: Queryable, accountId: string): Promise<string | undefined> {
  const r = await q.query<{ proxy_id: string }>("DELETE FROM proxy_allocations WHERE account_id = $1 AND expires_at < now() RETURNING proxy_id", [accountId]);
  return r.rows[0]?.proxy_id;
}

/** Accounts holding a proxy. */
export async function accountsOn(q: Queryable, proxyId: string): Promise<string[]> {
  return (await q.query<{ account_id: string }>("SELECT account_id FROM proxy_allocations WHERE proxy_id = $1 ORDER BY account_id", [proxyId])).rows.map((r) => r.account_id);
}

/** Records a health check's outcome; returns the failures in a row after it. */
export async function recordHealth(q: Queryable, id: string, ok: boolean, latencyMs: number, error: string, threshold: number): Promise<{ failures: number; healthy: boolean } | undefined> {
  const r = await q.query<{ consecutive_failures: number; healthy: boolean }>(
    `UPDATE proxies SET
       consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END,
       healthy = CASE WHEN $2 THEN true ELSE consecutive_failures + 1 < $5 END,
       last_checked_at = now(), last_latency_ms = $3, last_error = $4
     WHERE id = $1 RETURNING consecutive_failures, healthy`,
    [id, ok, latencyMs, error, threshold],
  );
  const row = r.rows[0];
  return row && { failures: row.consecutive_failures, healthy: row.healthy };
}

/** Claims proxies whose check is due (SKIP LOCKED: replicas share the work) and pushes their next check. */
export async function claimDueChecks(q: Queryable, limit: number, intervalMs: number): Promise<ProxyRow[]> {
  const r = await q.query<ProxyRow>(
    `UPDATE proxies p SET next_check_at = now() + $2 * interval '1 millisecond'
     WHERE p.id IN (SELECT id FROM proxies WHERE next_check_at <= now() ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING ${P}`,
    [limit, intervalMs],
  );
  return r.rows;
}

/** Allocations whose lease ran out. */
export async function expiredAllocations(q: Queryable, limit: number): Promise<string[]> {
  return (await q.query<{ account_id: string }>("SELECT account_id FROM proxy_allocations WHERE expires_at < now() ORDER BY expires_at LIMIT $1", [limit])).rows.map((r) => r.account_id);
}

/** ListProxies' filter: empty text and undefined booleans match everything. */
export type ProxyFilter = { country: string; provider: string; healthy?: boolean; tag: string; allocated?: boolean };

/** A pool row with the accounts holding the proxy now. */
export type ListedProxyRow = ProxyRow & { account_ids: string[] };

function proxyWhere(f: ProxyFilter, params: unknown[]): string[] {
  const where: string[] = [];
  if (f.country) where.push(`country = $${params.push(f.country)}`);
  if (f.provider) where.push(`provider = $${params.push(f.provider)}`);
  if (f.healthy !== undefined) where.push(f.healthy ? "healthy" : "NOT healthy");
  if (f.tag) where.push(`tags @> ARRAY[$${params.push(f.tag)}::text]`);
  if (f.allocated !== undefined) where.push(f.allocated ? "allocated > 0" : "allocated = 0");
  return where;
}

/** A keyset page of the pool, each proxy with the ids of the accounts holding it. */
export async function listProxies(q: Queryable, f: ProxyFilter, afterId: string, limit: number): Promise<ListedProxyRow[]> {
  const params: unknown[] = [];
  const where = proxyWhere(f, params);
  where.push(`id > $${params.push(afterId)}`);
  const accounts = "ARRAY(SELECT a.account_id FROM proxy_allocations a WHERE a.proxy_id = p.id ORDER BY a.account_id) AS account_ids";
  return (await q.query<ListedProxyRow>(`SELECT ${P}, ${accounts} FROM proxies p WHERE ${where.join(" AND ")} ORDER BY id LIMIT $${params.push(limit)}`, params)).rows;
}

/** How many proxies match a filter. */
export async function countProxies(q: Queryable, f: ProxyFilter): Promise<number> {
  const params: unknown[] = [];
  const where = proxyWhere(f, params);
  const r = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM proxies ${where.length ? "WHERE " + where.join(" AND ") : ""}`, params);
  return r.rows[0].n;
}

/** Deletes a proxy that no allocation references. */
export async function deleteProxy(q: Queryable, id: string): Promise<boolean> {
  return (await q.query("DELETE FROM proxies WHERE id = $1", [id])).rowCount > 0;
}

/** The pool by health: proxies, slots (capacity) and slots allocated, from the trigger-kept proxy_counts (migration 011; summed over its shards). */
export async function poolCounts(q: Queryable): Promise<{ healthy: boolean; n: number; capacity: number; allocated: number }[]> {
  return (await q.query<{ healthy: boolean; n: number; capacity: number; allocated: number }>("SELECT healthy, sum(n)::bigint AS n, sum(capacity)::bigint AS capacity, sum(allocated)::bigint AS allocated FROM proxy_counts GROUP BY healthy")).rows;
}
