/**
 * A connection lost the instant it is made must not end the process. The database here is a
 * socket speaking just enough of the PostgreSQL protocol: it accepts any login and, in the same
 * write as the ReadyForQuery that completes the connection, ends it the way pg_terminate_backend
 * does (FATAL 57P01). pg parses both in one go, as the pool hands the new client over.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { AppError } from "../errors.ts";
import { openPostgres } from "./postgres.ts";

/** A backend message: its type byte, its length (itself included), its body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const authOk = message("R", Buffer.from([0, 0, 0, 0]));
const ready = message("Z", Buffer.from("I"));
const terminated = message("E", Buffer.from("SFATAL\0C57P01\0Mterminating connection due to administrator command\0\0", "latin1"));

test("a backend terminated in the same chunk as the ReadyForQuery of its connection fails the call UNAVAILABLE; the process lives", async () => {
  const server = createServer((socket) => {
    socket.once("data", () => socket.end(Buffer.concat([authOk, ready, terminated])));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const errors: Error[] = [];
  const db = openPostgres({ url: `postgres://conveer@127.0.0.1:${port}/conveer`, max: 4, onError: (e) => errors.push(e) });
  try {
    const calls = await Promise.allSettled(Array.from({ length: 8 }, () => db.query("SELECT 1")));
    for (const c of calls) {
      assert.equal(c.status, "rejected");
      const err = (c as PromiseRejectedResult).reason as AppError;
      assert.ok(err instanceof AppError, `an AppError, not ${String(err)}`);
      assert.equal(err.code, "UNAVAILABLE", err.message);
    }
    assert.ok(errors.some((e) => (e as { code?: string }).code === "57P01"), "the lost connection was reported to onError");
  } finally {
    await db.close();
    server.close();
  }
});
