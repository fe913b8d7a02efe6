import assert from "node:assert/strict";
import { AppError } from "../../src/errors.ts";
import type { ErrorCode } from "../../src/errors.ts";

/** Asserts that p rejects with an AppError of the code, whose message matches `mentions` (domain-level tests). */
export async function rejectsWithAppError(p: Promise<unknown>, code: ErrorCode, mentions?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AppError, `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (mentions) assert.match(err.message, mentions);
    return true;
  });
}
