import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { batched } from "./batched.ts";
import { callDeadline, withCallDeadline } from "./call-deadline.ts";

/** A readMany over a fixed table that records each batch it was asked for and the deadline it ran under. */
function table(rows: Record<string, string>) {
  const batches: { keys: string[]; deadline: number | undefined }[] = [];
  const readMany = async (keys: readonly string[]) => {
    batches.push({ keys: [...keys], deadline: callDeadline() });
    await new Promise((r) => setTimeout(r, 1));
    return new Map(keys.filter((k) => k in rows).map((k) => [k, rows[k]]));
  };
  return { batches, readMany };
}

describe("batched", () => {
  const rows = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, `v${i}`]));

  test("reads started in one turn share one query; each gets its own row, a missing key undefined", async () => {
    const t = table(rows);
    const read = batched(t.readMany);
    const keys = [...Array.from({ length: 100 }, (_, i) => `k${i}`), "k5", "nope"];
    const got = await Promise.all(keys.map((k) => read(k)));
    assert.deepEqual(got, keys.map((k) => rows[k]));
    assert.equal(t.batches.length, 1);
    assert.equal(t.batches[0].keys.length, 101, "a key asked twice is read once");
  });

  test("batches are capped at maxBatch; a read in a later turn is never answered from an earlier batch", async () => {
    const t = table({ ...rows });
    const read = batched(t.readMany, { maxBatch: 10 });
    await Promise.all(Array.from({ length: 35 }, (_, i) => read(`k${i}`)));
    assert.deepEqual(t.batches.map((b) => b.keys.length), [10, 10, 10, 5]);
    const live: Record<string, string> = { a: "1" };
    const u = table(live);
    const readLive = batched(u.readMany);
    assert.equal(await readLive("a"), "1");
    live.a = "2";
    assert.equal(await readLive("a"), "2", "no cache between batches");
  });

  test("a failed query fails every read of its batch and none of the next", async () => {
    let fail = true;
    const read = batched(async (keys: readonly string[]) => {
      if (fail) throw new Error("store down");
      return new Map(keys.map((k) => [k, k.toUpperCase()]));
    });
    const r = await Promise.allSettled([read("a"), read("b")]);
    assert.deepEqual(r.map((x) => x.status), ["rejected", "rejected"]);
    assert.match(String((r[0] as PromiseRejectedResult).reason), /store down/);
    fail = false;
    assert.equal(await read("c"), "C");
  });

  test("a batch runs under the latest deadline of its callers, or none when a caller has none", async () => {
    const t = table(rows);
    const read = batched(t.readMany);
    const now = Date.now();
    await Promise.all([withCallDeadline(now + 1000, () => read("k1")), withCallDeadline(now + 5000, () => read("k2"))]);
    await Promise.all([withCallDeadline(now + 1000, () => read("k3")), read("k4")]);
    assert.deepEqual(t.batches.map((b) => b.deadline), [now + 5000, undefined]);
  });

  test("oneInFlight: calls made while a statement runs wait for it and go out together; never two at once; a failure frees the next", async () => {
    let running = 0;
    let most = 0;
    const batches: string[][] = [];
    let fail = true;
    const slow = batched(
      async (keys: readonly string[]) => {
        running++;
        most = Math.max(most, running);
        batches.push([...keys]);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        if (fail) {
          fail = false;
          throw new Error("store down");
        }
        return new Map(keys.map((k) => [k, k.toUpperCase()]));
      },
      { maxBatch: 3, oneInFlight: true },
    );
    const first = slow("a").catch((err: Error) => err.message);
    await new Promise((r) => setTimeout(r, 5)); // "a" runs; the next calls come one turn apart while it does
    const later: Promise<unknown>[] = [];
    for (const k of ["b", "c", "d", "e"]) {
      later.push(slow(k));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await first, "store down");
    assert.deepEqual(await Promise.all(later), ["B", "C", "D", "E"]);
    assert.equal(most, 1, "one statement at a time");
    assert.deepEqual(batches, [["a"], ["b", "c", "d"], ["e"]], "what came meanwhile shares the next statements (up to maxBatch)");
    // Without the option, each turn's calls go out at once, side by side.
    running = most = 0;
    batches.length = 0;
    const eager = batched(async (keys: readonly string[]) => {
      running++;
      most = Math.max(most, running);
      batches.push([...keys]);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return new Map(keys.map((k) => [k, k]));
    });
    const all: Promise<unknown>[] = [];
    for (const k of ["x", "y", "z"]) {
      all.push(eager(k));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    assert.equal(batches.length, 3);
    assert.ok(most > 1);
  });
});
