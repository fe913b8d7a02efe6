import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The deadline of the call being served, carried through async work the way trace context is, so
 * the store can bound a wait for a connection by the caller's own deadline without every query
 * function taking one. The transport sets it once per call (`withCallDeadline`); background work
 * has none and waits up to the store's own limit.
 */
const deadlines = new AsyncLocalStorage<number>();

/**
 * Runs fn under deadline (epoch ms; undefined or Infinity: none). A call made while serving
 * another (an in-process peer call) keeps the earlier of the two deadlines.
 */
export function withCallDeadline<T>(deadline: number | undefined, fn: () => T): T {
  if (deadline === undefined || !Number.isFinite(deadline)) return fn();
  const outer = deadlines.getStore();
  return outer !== undefined && outer <= deadline ? fn() : deadlines.run(deadline, fn);
}

/** The current call's deadline (epoch ms), or undefined outside a call or for a call without one. */
export function callDeadline(): number | undefined {
  return deadlines.getStore();
}

/**
 * Runs fn under exactly `deadline` (undefined: none), whatever call it was started from: work done
 * for several calls at once (a batched read) is bounded by the latest of their deadlines, not by
 * the first caller's.
 */
export function withOwnDeadline<T>(deadline: number | undefined, fn: () => T): T {
  return deadline === undefined || !Number.isFinite(deadline) ? deadlines.exit(fn) : deadlines.run(deadline, fn);
}
