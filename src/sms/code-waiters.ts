/**
 * The in-memory registry of GetCode calls waiting in this process, keyed by activation id. It
 * never polls and holds no timer per waiter: deadlines live in one binary min-heap with a single
 * timer armed for the earliest, and cancellation uses the waiter object itself as the abort
 * listener (no closure per waiter). Waking is by key: whoever learns an activation's outcome (the
 * provider subscription here, or a NOTIFY from another replica) calls `wake(key, value)`.
 */

/** How a wait ended. */
export type WaitResult<T> =
  | { kind: "woken"; value: T }
  | { kind: "deadline" }
  | { kind: "aborted"; reason: unknown }
  | { kind: "closed" };

const DEADLINE: { kind: "deadline" } = Object.freeze({ kind: "deadline" });
const CLOSED: { kind: "closed" } = Object.freeze({ kind: "closed" });

/** One waiting call. It is its own abort listener (handleEvent), so a wait allocates no closure for it. */
class Waiter<T> {
  readonly key: string;
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  resolve: ((r: WaitResult<T>) => void) | undefined;
  /** Position in the deadline heap; -1 once removed. */
  index = -1;
  readonly owner: CodeWaiters<T>;

  constructor(owner: CodeWaiters<T>, key: string, deadline: number, signal: AbortSignal | undefined, resolve: (r: WaitResult<T>) => void) {
    this.owner = owner;
    this.key = key;
    this.deadline = deadline;
    this.signal = signal;
    this.resolve = resolve;
  }

  handleEvent(): void {
    this.owner.settle(this, { kind: "aborted", reason: this.signal?.reason });
  }
}

/** A registry of waiters; T is what a wake delivers (e.g. the code, or the activation's end). */
export class CodeWaiters<T> {
  readonly #byKey = new Map<string, Waiter<T> | Set<Waiter<T>>>();
  readonly #heap: Waiter<T>[] = [];
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #closed = false;

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** Waiters registered now. */
  get size(): number {
    return this.#heap.length;
  }

  /** The keys someone here waits on. */
  keys(): IterableIterator<string> {
    return this.#byKey.keys();
  }

  /** True when someone here waits on key. */
  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /**
   * Waits until `wake(key, …)`, the deadline (epoch ms), the signal's abort, or close(). The waiter
   * is registered synchronously, before this returns: a read issued after the call cannot miss a
   * wake that the read's result would not show.
   */
  wait(key: string, deadline: number, signal?: AbortSignal): Promise<WaitResult<T>> {
    if (this.#closed) return Promise.resolve(CLOSED);
    if (signal?.aborted) return Promise.resolve({ kind: "aborted", reason: signal.reason });
    const { promise, resolve } = Promise.withResolvers<WaitResult<T>>();
    const w = new Waiter<T>(this, key, deadline, signal, resolve);
    const held = this.#byKey.get(key);
    if (held === undefined) this.#byKey.set(key, w);
    else if (held instanceof Set) held.add(w);
    else this.#byKey.set(key, new Set([held, w]));
    this.#push(w);
    signal?.addEventListener("abort", w, { once: true });
    if (deadline < this.#timerAt) this.#arm();
    return promise;
  }

  /** Wakes every waiter on key with value; answers how many were woken. */
  wake(key: string, value: T): number {
    const held = this.#byKey.get(key);
    if (held === undefined) return 0;
    const result: WaitResult<T> = { kind: "woken", value };
    if (held instanceof Set) {
      const n = held.size;
      for (const w of [...held]) this.settle(w, result);
      return n;
    }
    this.settle(held, result);
    return 1;
  }

  /** Ends every wait with `closed` and refuses new ones (the service is stopping). */
  close(): void {
    this.#closed = true;
    for (const w of [...this.#heap]) this.settle(w, CLOSED);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Removes a waiter everywhere and resolves it; a second settle is a no-op. */
  settle(w: Waiter<T>, result: WaitResult<T>): void {
    const resolve = w.resolve;
    if (!resolve) return;
    w.resolve = undefined;
    w.signal?.removeEventListener("abort", w);
    const held = this.#byKey.get(w.key);
    if (held === w) this.#byKey.delete(w.key);
    else if (held instanceof Set) {
      held.delete(w);
      if (held.size === 1) this.#byKey.set(w.key, held.values().next().value!);
      else if (held.size === 0) this.#byKey.delete(w.key);
    }
    this.#remove(w);
    resolve(result);
  }

  // The single timer: armed for the earliest deadline, re-armed when an earlier one arrives or it fires.
  #arm(): void {
    const head = this.#heap[0];
    if (!head) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
      return;
    }
    if (this.#timer && head.deadline >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = head.deadline;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, head.deadline - this.#now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    // setTimeout may fire a millisecond early by the clock; a small tolerance avoids a 1 ms re-arm.
    while (this.#heap.length > 0 && this.#heap[0].deadline <= now + 1) this.settle(this.#heap[0], DEADLINE);
    this.#arm();
  }

  // An indexed binary min-heap on deadline: O(log n) insert and removal from anywhere.
  #push(w: Waiter<T>): void {
    w.index = this.#heap.length;
    this.#heap.push(w);
    this.#up(w.index);
  }

  #remove(w: Waiter<T>): void {
    const i = w.index;
    if (i < 0) return;
    w.index = -1;
    const last = this.#heap.pop()!;
    if (this.#heap.length === 0) {
      // Nothing left to time out: no timer may keep the process alive for a deadline nobody waits on.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
    }
    if (last === w) return;
    this.#heap[i] = last;
    last.index = i;
    this.#up(i);
    this.#down(last.index);
  }

  #up(i: number): void {
    const h = this.#heap;
    const w = h[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].deadline <= w.deadline) break;
      h[i] = h[p];
      h[i].index = i;
      i = p;
    }
    h[i] = w;
    w.index = i;
  }

  #down(i: number): void {
    const h = this.#heap;
    const n = h.length;
    const w = h[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r].deadline < h[l].deadline ? r : l;
      if (h[c].deadline >= w.deadline) break;
      h[i] = h[c];
      h[i].index = i;
      i = c;
    }
    h[i] = w;
    w.index = i;
  }
}
