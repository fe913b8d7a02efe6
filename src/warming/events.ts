import type { Logger } from "pino";
import { AppError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import * as store from "./warming-store.ts";
import type { EventRow } from "./warming-store.ts";

/**
 * The event hub: ONE `LISTEN warming_events` per process, fanned out to every StreamEvents
 * subscriber in event-id order, with no gaps and no duplicates, never slowing the writers.
 *
 * Ordering. Event ids come from a sequence, and transactions commit in any order, so id 11 can be
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

/** A snapshot ("xmin:xmax:xip1,xip2"): its xmax and in-progress transaction ids. */
export type Snapshot = { xmax: bigint; xip: bigint[] };

/** Parses pg_current_snapshot()'s text form. */
export function parseSnapshot(text: string): Snapshot {
  const [, xmax = "0", xip = ""] = text.split(":");
  return { xmax: BigInt(xmax), xip: xip ? xip.split(",").map((x) => BigInt(x)) : [] };
}

/**
 * Who may still hold ids that a snapshot did not show: the snapshot's in-progress list, and (once a
 * witness id taken after it is known) every id in [xmax, witness).
 */
export type Suspects = { snap: Snapshot; witness?: bigint };

/** True when a suspect is still in progress in `now` (a later snapshot); without a witness, always true. */
export function suspectsRunning(s: Suspects, now: Snapshot): boolean {
  if (s.witness === undefined) return true;
  const listed = new Set(s.snap.xip);
  return now.xip.some((x) => listed.has(x) || (x >= s.snap.xmax && x < s.witness!)) || now.xmax <= s.witness;
}

/** Creates the hub; start() before subscribing (subscribe waits for it). */
export function createEventHub(deps: { db: Db; log: Logger; options?: EventHubOptions }) {
  const { db, log } = deps;
  const bufferSize = deps.options?.bufferSize ?? 1000;
  const pollBatch = deps.options?.pollBatch ?? 1000;
  const pollIntervalMs = deps.options?.pollIntervalMs ?? 1000;
  const gapRecheckMs = deps.options?.gapRecheckMs ?? 20;
  const maxGapWaitMs = deps.options?.maxGapWaitMs ?? 30_000;

  let watermark = 0;
  let gap: { at: number; suspects: Suspects; since: number } | undefined;
  const subscribers = new Set<Subscriber>();
  const listeners = new Set<Listener>();
  let polling: Promise<void> | undefined;
  let again = false;
  let unlisten: (() => Promise<void>) | undefined;
  let periodic: NodeJS.Timeout | undefined;
  let gapTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const ready = Promise.withResolvers<void>();
  ready.promise.catch(() => {});

  function deliver(e: EventRow): void {
    watermark = e.id;
    for (const fn of listeners) {
      try {
        fn(e);
      } catch (err) {
        log.warn({ err: String(err) }, "warming event listener failed");
      }
    }
    for (const s of subscribers) {
      if (!s.push(e)) {
        subscribers.delete(s);
        s.fail(new AppError("RESOURCE_EXHAUSTED", `the event stream fell more than ${bufferSize} events behind and was dropped; reconnect with after_event_id=${s.cursor} to continue where it stopped`));
      }
    }
  }

  /**
   * Walks rows read after W in one snapshot; stops at a gap that may still fill. Answers "gap" (wait
   * for the writer: re-check soon), "witness" (the gap persists: take a witness id, then re-read),
   * or "ok".
   */
  function advance(rows: EventRow[], snapshotText: string): "ok" | "gap" | "witness" {
    const snap = parseSnapshot(snapshotText);
    for (const e of rows) {
      if (e.id <= watermark) continue;
      if (e.id !== watermark + 1) {
        // Ids watermark+1 .. e.id-1 are not visible in this snapshot, e is.
        if (!gap || gap.at !== watermark) {
          gap = { at: watermark, suspects: { snap }, since: Date.now() };
          return "gap";
        }
        const waited = Date.now() - gap.since;
        // Writers usually commit within milliseconds; a witness (a transaction id) only for gaps that linger.
        if (gap.suspects.witness === undefined) return waited < gapRecheckMs ? "gap" : "witness";
        if (suspectsRunning(gap.suspects, snap)) {
          if (waited < maxGapWaitMs) return "gap";
          log.warn({ from: watermark + 1, to: e.id - 1, waited_ms: waited }, "skipping warming event ids held by a transaction still open; events it commits later are not streamed live");
        }
        gap = undefined;
      }
      deliver(e);
    }
    return "ok";
  }

  function scheduleGapCheck(): void {
    if (gapTimer || stopped) return;
    gapTimer = setTimeout(() => {
      gapTimer = undefined;
      poll();
    }, gapRecheckMs);
  }

  async function pollOnce(): Promise<void> {
    for (;;) {
      const { snapshot, rows } = await store.pollEvents(db, watermark, pollBatch, subscribers.size > 0);
      const r = advance(rows, snapshot);
      if (r === "witness") {
        gap!.suspects.witness = BigInt(await store.witnessXid(db));
        continue;
      }
      if (r === "gap") {
        scheduleGapCheck();
        return;
      }
      if (rows.length < pollBatch) return;
    }
  }

  /** Reads after W now, or right after the read in progress (bursts of NOTIFY coalesce). */
  function poll(): void {
    if (stopped) return;
    if (polling) {
      again = true;
      return;
    }
    polling = (async () => {
      do {
        again = false;
        try {
          await pollOnce();
        } catch (err) {
          if (!stopped) log.warn({ err: String(err) }, "reading warming events failed; retrying on the next notification or poll");
          return;
        }
      } while (again && !stopped);
    })().finally(() => {
      polling = undefined;
    });
  }

  // Nobody subscribed: the periodic poll keeps the watermark fresh enough; reading after every
  // NOTIFY would only cost the store (on PGlite, the same connection the workers use).
  /** Brings the watermark up to date: waits for a read that starts after this call. */
  async function catchUp(): Promise<void> {
    while (polling) await polling;
    poll();
    await polling;
  }

  function onNotify(payload: string): void {
    if (subscribers.size === 0) return;
    const id = Number(payload);
    if (!Number.isFinite(id) || id > watermark) poll();
  }

  /** Waits until every transaction that may hold an id ≤ the starting W has ended: then every id ≤ W is settled. */
  async function settleStart(snapshotText: string): Promise<void> {
    const suspects: Suspects = { snap: parseSnapshot(snapshotText), witness: BigInt(await store.witnessXid(db)) };
    const since = Date.now();
    while (!stopped && Date.now() - since < maxGapWaitMs) {
      if (!suspectsRunning(suspects, parseSnapshot(await store.currentSnapshot(db)))) return;
      await new Promise((r) => setTimeout(r, gapRecheckMs));
    }
  }

  return {
    /** Subscribes to NOTIFY (the process's one LISTEN) and sets the watermark at the newest settled event. */
    async start(): Promise<void> {
      try {
        unlisten = await db.listen(store.EVENTS_CHANNEL, onNotify, { onResubscribe: () => subscribers.size > 0 && poll() });
        const head = await store.eventsHead(db);
        watermark = head.maxId;
        await settleStart(head.snapshot);
        periodic = setInterval(poll, pollIntervalMs);
        periodic.unref();
        ready.resolve();
        poll();
      } catch (err) {
        ready.reject(err);
        throw err;
      }
    },

    /** Ends every stream (UNAVAILABLE, naming where to resume) and stops listening. */
    async stop(): Promise<void> {
      stopped = true;
      clearInterval(periodic);
      clearTimeout(gapTimer);
      ready.reject(new AppError("UNAVAILABLE", "the warming service is stopping"));
      for (const s of subscribers) s.fail(new AppError("UNAVAILABLE", `the warming service is stopping; reconnect with after_event_id=${s.cursor}`));
      subscribers.clear();
      await polling;
      await unlisten?.().catch(() => {});
      unlisten = undefined;
    },

    /** The id up to which every event is settled. */
    watermark: () => watermark,

    /** Calls fn for every event, in order, synchronously as it is delivered (in-process use: the worker's wake-up). */
    onEvent(fn: Listener): () => void {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },

    /** Asks for a read now when someone is subscribed (after a local write: saves waiting for the NOTIFY round trip). */
    poke(): void {
      if (subscribers.size > 0) poll();
    },

    /** How many streams are attached. */
    subscriberCount: () => subscribers.size,

    /**
     * The events matching f, in id order: the stored ones after f.afterId (absent: none, start
     * live), then live ones, until the signal aborts (the stream then just ends). A subscriber that
     * falls `bufferSize` events behind gets RESOURCE_EXHAUSTED naming its resume point.
     */
    async *subscribe(f: EventFilter, signal?: AbortSignal): AsyncGenerator<EventRow> {
      await ready.promise;
      // "From now on" is the watermark as of now, not as of the last read (reads pause while nobody listens).
      if (f.afterId === undefined) await catchUp();
      let cursor = f.afterId ?? watermark;
      // Replay: everything ≤ W is settled, so the table holds all of it.
      while (cursor < watermark) {
        if (signal?.aborted) return;
        const upTo = watermark;
        const rows = await store.eventsBetween(db, cursor, upTo, f, 500);
        for (const e of rows) {
          yield e;
          cursor = e.id;
          if (signal?.aborted) return;
        }
        if (rows.length < 500) cursor = upTo;
      }
      if (stopped) throw new AppError("UNAVAILABLE", `the warming service is stopping; reconnect with after_event_id=${cursor}`);
      // Live, attached in the same tick as the last check: the next delivery has an id > cursor.
      const sub = new Subscriber(f, cursor, bufferSize);
      subscribers.add(sub);
      // The watermark may lag while nobody listens; catch up now (deliveries go to `sub`).
      poll();
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
        subscribers.delete(sub);
      }
    },
  };
}

/** The event hub's API. */
export type EventHub = ReturnType<typeof createEventHub>;
