import type { Logger } from "pino";
import { AppError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import * as store from "./warming-store.ts";
import type { EventRow } from "./warming-store.ts";
import { advance, parseSnapshot, suspectsRunning, witnessed } from "./event-order.ts";
import type { Order, Suspects } from "./event-order.ts";

/**
 * The event hub: ONE `LISTEN warming_events` per process, fanned out to every StreamEvents
 * subscriber in event-id order, with no gaps and no duplicates, never slowing the writers.
 *
 * Ordering (the rule itself is pure, in event-order.ts). Event ids come from a sequence, and transactions commit in any order, so id 11 can be
 * visible before id 10 (still in flight) — a reader that moved past 11 would lose 10. The hub keeps
 * a watermark W: every id ≤ W is settled (delivered, or known never to exist), and it only
 * delivers W+1. Every event writer holds a transaction id before it takes event ids (it has
 * changed a task or action row first), so whoever holds a missing id had its transaction id before
 * the snapshot S1 that first showed a later row. Those are S1's in-progress list plus any id at or
 * above S1's xmax (xmax is latestCompletedXid + 1, so running transactions newer than the last
 * completion are not listed). When the gap outlives one re-check, the hub takes a witness
 * transaction id X (after S1): the candidates are S1's list and [xmax(S1), X). Once no candidate
 * is in progress and the id is still missing, its writer rolled back, and W moves past it. No timer
 * guesses; the wait lasts as long as the writer's transaction. A safety valve (maxGapWaitMs) skips
 * a gap held open by an unrelated long transaction, with a warning.
 *
 * Delivery. The hub pushes synchronously into each subscriber's bounded queue; a subscriber whose
 * queue is full is dropped with RESOURCE_EXHAUSTED naming the after_event_id to resume from, so a
 * slow client costs the workers nothing. NOTIFY only says "look"; the hub reads the table after W
 * (coalescing bursts into one read), and a periodic poll covers notifications lost while the
 * LISTEN connection reconnected. With nobody subscribed only the periodic poll runs (light rows):
 * in-process listeners (the worker's wake-up on a status change) then hear within pollIntervalMs.
 *
 * Resume. A subscriber with after_event_id first replays stored events in (after, W] from the
 * table (all settled), paging until it has caught up with W, then attaches to the live fan-out in
 * the same tick: nothing between replay and live is missed or repeated.
 */

/** Options of the hub; every field has a default. */
export type EventHubOptions = {
  /** Events a subscriber may have queued before it is dropped. Default 1000. */
  bufferSize?: number;
  /** Rows read per poll. Default 1000. */
  pollBatch?: number;
  /** A poll at least this often (real ms), for notifications lost during a reconnect. Default 1000. */
  pollIntervalMs?: number;
  /** How often a gap is re-checked while its writer may still commit, and how long it lingers before the hub takes a witness id (real ms). Default 20. */
  gapRecheckMs?: number;
  /** A gap open longer than this (real ms) is skipped with a warning. Default 30000. */
  maxGapWaitMs?: number;
};

/** What a subscriber wants: one task or all, some event types or all, and where to resume. */
export type EventFilter = { taskId?: string; types?: readonly string[]; afterId?: number };

type Listener = (e: EventRow) => void;

class Subscriber {
  readonly queue: EventRow[] = [];
  head = 0;
  cursor: number;
  error: Error | undefined;
  wake: (() => void) | undefined;
  readonly taskId: string | undefined;
  readonly types: ReadonlySet<string> | undefined;
  readonly max: number;

  constructor(f: EventFilter, cursor: number, max: number) {
    this.taskId = f.taskId || undefined;
    this.types = f.types && f.types.length > 0 ? new Set(f.types) : undefined;
    this.cursor = cursor;
    this.max = max;
  }

  matches(e: EventRow): boolean {
    return (!this.taskId || e.task_id === this.taskId) && (!this.types || this.types.has(e.event_type));
  }

  /** Queues e; false when the queue is full (the subscriber must be dropped). */
  push(e: EventRow): boolean {
    if (e.id <= this.cursor || !this.matches(e)) return true;
    if (this.queue.length - this.head >= this.max) return false;
    this.queue.push(e);
    this.cursor = e.id;
    this.signal();
    return true;
  }

  fail(err: Error): void {
    this.error = err;
    this.signal();
  }

  signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  take(): EventRow | undefined {
    if (this.head >= this.queue.length) return undefined;
    const e = this.queue[this.head++];
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return e;
  }
}

/** The hub's settings (defaults applied), collaborators and changing state. */
type Hub = {
  db: Db;
  log: Logger;
  bufferSize: number;
  pollBatch: number;
  pollIntervalMs: number;
  gapRecheckMs: number;
  maxGapWaitMs: number;
  order: Order;
  subscribers: Set<Subscriber>;
  listeners: Set<Listener>;
  /** The read in progress; `again`: read once more after it (a notification came meanwhile). */
  polling: Promise<void> | undefined;
  again: boolean;
  unlisten: (() => Promise<void>) | undefined;
  periodic: NodeJS.Timeout | undefined;
  gapTimer: NodeJS.Timeout | undefined;
  stopped: boolean;
  ready: PromiseWithResolvers<void>;
};

/** Hands e to the in-process listeners and every subscriber; drops a subscriber whose queue is full. */
function deliver(h: Hub, e: EventRow): void {
  for (const fn of h.listeners) {
    try {
      fn(e);
    } catch (err) {
      h.log.warn({ err: String(err) }, "warming event listener failed");
    }
  }
  for (const s of h.subscribers) {
    if (!s.push(e)) {
      h.subscribers.delete(s);
      s.fail(new AppError("RESOURCE_EXHAUSTED", `the event stream fell more than ${h.bufferSize} events behind and was dropped; reconnect with after_event_id=${s.cursor} to continue where it stopped`));
    }
  }
}

function scheduleGapCheck(h: Hub): void {
  if (h.gapTimer || h.stopped) return;
  h.gapTimer = setTimeout(() => {
    h.gapTimer = undefined;
    poll(h);
  }, h.gapRecheckMs);
}

/** Reads after W until caught up or stopped at a gap (then a re-check is scheduled). */
async function pollOnce(h: Hub): Promise<void> {
  for (;;) {
    const { snapshot, rows } = await store.pollEvents(h.db, h.order.watermark, h.pollBatch, h.subscribers.size > 0);
    const r = advance(h.order, rows, parseSnapshot(snapshot), Date.now(), h);
    h.order = r.order;
    if (r.skipped) {
      h.log.warn({ from: r.skipped.from, to: r.skipped.to, waited_ms: r.skipped.waitedMs }, "skipping warming event ids held by a transaction still open; events it commits later are not streamed live");
    }
    for (const e of r.deliver) deliver(h, e);
    if (r.next === "witness") {
      h.order = witnessed(h.order, BigInt(await store.witnessXid(h.db)));
      continue;
    }
    if (r.next === "gap") {
      scheduleGapCheck(h);
      return;
    }
    if (rows.length < h.pollBatch) return;
  }
}

/** Reads after W now, or right after the read in progress (bursts of NOTIFY coalesce). */
function poll(h: Hub): void {
  if (h.stopped) return;
  if (h.polling) {
    h.again = true;
    return;
  }
  h.polling = (async () => {
    do {
      h.again = false;
      try {
        await pollOnce(h);
      } catch (err) {
        if (!h.stopped) h.log.warn({ err: String(err) }, "reading warming events failed; retrying on the next notification or poll");
        return;
      }
    } while (h.again && !h.stopped);
  })().finally(() => {
    h.polling = undefined;
  });
}

// Nobody subscribed: the periodic poll keeps the watermark fresh enough; reading after every
// NOTIFY would only cost the store (on PGlite, the same connection the workers use).
/** Brings the watermark up to date: waits for a read that starts after this call. */
async function catchUp(h: Hub): Promise<void> {
  while (h.polling) await h.polling;
  poll(h);
  await h.polling;
}

function onNotify(h: Hub, payload: string): void {
  if (h.subscribers.size === 0) return;
  const id = Number(payload);
  if (!Number.isFinite(id) || id > h.order.watermark) poll(h);
}

/** Waits until every transaction that may hold an id ≤ the starting W has ended: then every id ≤ W is settled. */
async function settleStart(h: Hub, snapshotText: string): Promise<void> {
  const suspects: Suspects = { snap: parseSnapshot(snapshotText), witness: BigInt(await store.witnessXid(h.db)) };
  const since = Date.now();
  while (!h.stopped && Date.now() - since < h.maxGapWaitMs) {
    if (!suspectsRunning(suspects, parseSnapshot(await store.currentSnapshot(h.db)))) return;
    await new Promise((r) => setTimeout(r, h.gapRecheckMs));
  }
}

/** Subscribes to NOTIFY (the process's one LISTEN) and sets the watermark at the newest settled event. */
async function start(h: Hub): Promise<void> {
  try {
    h.unlisten = await h.db.listen(store.EVENTS_CHANNEL, (payload) => onNotify(h, payload), { onResubscribe: () => h.subscribers.size > 0 && poll(h) });
    const head = await store.eventsHead(h.db);
    h.order = { watermark: head.maxId };
    await settleStart(h, head.snapshot);
    h.periodic = setInterval(() => poll(h), h.pollIntervalMs);
    h.periodic.unref();
    h.ready.resolve();
    poll(h);
  } catch (err) {
    h.ready.reject(err);
    throw err;
  }
}

/** Ends every stream (UNAVAILABLE, naming where to resume) and stops listening. */
async function stop(h: Hub): Promise<void> {
  h.stopped = true;
  clearInterval(h.periodic);
  clearTimeout(h.gapTimer);
  h.ready.reject(new AppError("UNAVAILABLE", "the warming service is stopping"));
  for (const s of h.subscribers) s.fail(new AppError("UNAVAILABLE", `the warming service is stopping; reconnect with after_event_id=${s.cursor}`));
  h.subscribers.clear();
  await h.polling;
  await h.unlisten?.().catch(() => {});
  h.unlisten = undefined;
}

/**
 * The events matching f, in id order: the stored ones after f.afterId (absent: none, start
 * live), then live ones, until the signal aborts (the stream then just ends). A subscriber that
 * falls `bufferSize` events behind gets RESOURCE_EXHAUSTED naming its resume point.
 */
async function* subscribe(h: Hub, f: EventFilter, signal?: AbortSignal): AsyncGenerator<EventRow> {
  await h.ready.promise;
  // "From now on" is the watermark as of now, not as of the last read (reads pause while nobody listens).
  if (f.afterId === undefined) await catchUp(h);
  let cursor = f.afterId ?? h.order.watermark;
  // Replay: everything ≤ W is settled, so the table holds all of it.
  while (cursor < h.order.watermark) {
    if (signal?.aborted) return;
    const upTo = h.order.watermark;
    const rows = await store.eventsBetween(h.db, cursor, upTo, f, 500);
    for (const e of rows) {
      yield e;
      cursor = e.id;
      if (signal?.aborted) return;
    }
    if (rows.length < 500) cursor = upTo;
  }
  if (h.stopped) throw new AppError("UNAVAILABLE", `the warming service is stopping; reconnect with after_event_id=${cursor}`);
  // Live, attached in the same tick as the last check: the next delivery has an id > cursor.
  const sub = new Subscriber(f, cursor, h.bufferSize);
  h.subscribers.add(sub);
  // The watermark may lag while nobody listens; catch up now (deliveries go to `sub`).
  poll(h);
  const onAbort = () => sub.signal();
  signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const e = sub.take();
      if (e) {
        yield e;
        continue;
      }
      if (sub.error) throw sub.error;
      if (signal?.aborted) return;
      await new Promise<void>((resolve) => {
        sub.wake = resolve;
      });
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    h.subscribers.delete(sub);
  }
}

/** Creates the hub; start() before subscribing (subscribe waits for it). */
export function createEventHub(deps: { db: Db; log: Logger; options?: EventHubOptions }) {
  const o = deps.options;
  const h: Hub = {
    db: deps.db,
    log: deps.log,
    bufferSize: o?.bufferSize ?? 1000,
    pollBatch: o?.pollBatch ?? 1000,
    pollIntervalMs: o?.pollIntervalMs ?? 1000,
    gapRecheckMs: o?.gapRecheckMs ?? 20,
    maxGapWaitMs: o?.maxGapWaitMs ?? 30_000,
    order: { watermark: 0 },
    subscribers: new Set(),
    listeners: new Set(),
    polling: undefined,
    again: false,
    unlisten: undefined,
    periodic: undefined,
    gapTimer: undefined,
    stopped: false,
    ready: Promise.withResolvers<void>(),
  };
  h.ready.promise.catch(() => {});

  return {
    /** Subscribes to NOTIFY (the process's one LISTEN) and sets the watermark at the newest settled event. */
    start: () => start(h),

    /** Ends every stream (UNAVAILABLE, naming where to resume) and stops listening. */
    stop: () => stop(h),

    /** The id up to which every event is settled. */
    watermark: () => h.order.watermark,

    /** Calls fn for every event, in order, synchronously as it is delivered (in-process use: the worker's wake-up). */
    onEvent(fn: Listener): () => void {
      h.listeners.add(fn);
      return () => h.listeners.delete(fn);
    },

    /** Asks for a read now when someone is subscribed (after a local write: saves waiting for the NOTIFY round trip). */
    poke(): void {
      if (h.subscribers.size > 0) poll(h);
    },

    /** How many streams are attached. */
    subscriberCount: () => h.subscribers.size,

    /** See subscribe. */
    subscribe: (f: EventFilter, signal?: AbortSignal) => subscribe(h, f, signal),
  };
}

/** The event hub's API. */
export type EventHub = ReturnType<typeof createEventHub>;
