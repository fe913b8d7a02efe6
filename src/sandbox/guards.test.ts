import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as guards from "./guards.ts";
import { createSandboxContext } from "./sandbox-context.ts";
import { SandboxError } from "./sandbox-error.ts";
import type { SandboxErrorCode } from "./sandbox-error.ts";
import { statusOf } from "./http.ts";

const refused = (code: SandboxErrorCode, message?: RegExp) => (err: unknown) =>
  err instanceof SandboxError && err.code === code && (!message || message.test(err.message));

describe("sandbox guards", () => {
  test("the idempotency memo forgets its oldest tenth past IDEMPOTENCY_KEYS_KEPT, keeps the rest, and counts a repeated key once", () => {
    const ctx = createSandboxContext();
    const s = ctx.world.platforms.vk;
    const answer = (i: number) => ({ userId: "u1", status: 200, body: { i }, at: i, replays: 0 });
    const kept = guards.IDEMPOTENCY_KEYS_KEPT;
    for (let i = 0; i < kept; i++) guards.remember(s, `key-${i}`, answer(i));
    guards.remember(s, "key-5", answer(5));
    assert.equal(Object.keys(s.idempotency).length, kept, "a key remembered again is not counted twice");
    guards.remember(s, `key-${kept}`, answer(kept));
    const keys = Object.keys(s.idempotency);
    assert.equal(keys.length, kept + 1 - Math.ceil(kept / 10));
    assert.ok(!Object.hasOwn(s.idempotency, "key-0") && !Object.hasOwn(s.idempotency, `key-${Math.ceil(kept / 10) - 1}`), "the oldest are forgotten");
    assert.ok(Object.hasOwn(s.idempotency, `key-${Math.ceil(kept / 10)}`) && Object.hasOwn(s.idempotency, `key-${kept}`), "the newer ones are kept");
  });

  test("rate buckets: burst, then a wait until the refill, per key", () => {
    const clock = { t: 0 };
    const ctx = createSandboxContext({ now: () => clock.t, rateLimit: { burst: 2, perSecond: 0.5 } });
    assert.equal(guards.take(ctx, "vk/u1"), 0);
    assert.equal(guards.take(ctx, "vk/u1"), 0);
    assert.equal(guards.take(ctx, "vk/u1"), 2000);
    assert.equal(guards.take(ctx, "vk/u2"), 0, "another account has its own bucket");
    clock.t += 1500;
    assert.throws(() => guards.spendAction(ctx, "vk", "u1"), (err) => refused("rate_limited")(err) && (err as SandboxError).retryAfterMs === 500);
    clock.t += 500;
    guards.spendAction(ctx, "vk", "u1");
    guards.setRateLimit(ctx, { burst: 1 });
    assert.equal(guards.take(ctx, "vk/u1"), 0, "a new limit refills every bucket");
    assert.throws(() => guards.setRateLimit(ctx, { perSecond: 0 }), refused("invalid"));
  });

  test("faults are checked and merged; the injected failure follows errorRate", () => {
    const ctx = createSandboxContext({ random: () => 0.5 });
    assert.throws(() => guards.setFaults(ctx, { latency: { minMs: 5, maxMs: 1 } }), refused("invalid", /latency/));
    assert.throws(() => guards.setFaults(ctx, { errorRate: 2 }), refused("invalid", /errorRate/));
    assert.deepEqual(guards.setFaults(ctx, { latency: { minMs: 10, maxMs: 30 } }).latency, { minMs: 10, maxMs: 30 });
    assert.equal(guards.faultDelay(ctx), 20);
    guards.injectFailure(ctx);
    guards.setFaults(ctx, { errorRate: 0.6 });
    assert.throws(() => guards.injectFailure(ctx), refused("unavailable"));
    assert.equal(ctx.faults.codeDelayMs, 300, "unnamed settings keep their values");
  });

  test("idempotency memo: a repeat replays (counted), another account's key is refused", () => {
    const ctx = createSandboxContext();
    const s = ctx.world.platforms.vk;
    assert.equal(guards.idempotencyKeyOf(undefined), "");
    assert.equal(guards.idempotencyKeyOf(["k1", "k2"]), "k1");
    assert.throws(() => guards.idempotencyKeyOf("a b"), refused("invalid", /Idempotency-Key/));
    assert.equal(guards.replay(ctx, s, "k1", "u1"), undefined);
    guards.remember(s, "k1", { userId: "u1", status: 201, body: { ok: true }, at: 0, replays: 0 });
    assert.deepEqual(guards.replay(ctx, s, "k1", "u1"), { userId: "u1", status: 201, body: { ok: true }, at: 0, replays: 1 });
    assert.throws(() => guards.replay(ctx, s, "k1", "u2"), refused("key_reused"));
    assert.throws(() => guards.replay(ctx, s, "k1", "u2"), (err) => statusOf(err as SandboxError) === 422);
  });

  test("access token: required only when set and required() says so; compared whole", async () => {
    const open = createSandboxContext();
    await guards.checkAccess(open, undefined);
    let required = false;
    const ctx = createSandboxContext({ access: { token: "s3cret", required: () => required } });
    await guards.checkAccess(ctx, undefined);
    required = true;
    await assert.rejects(guards.checkAccess(ctx, undefined), refused("access_denied"));
    await assert.rejects(guards.checkAccess(ctx, "Bearer s3cre"), refused("access_denied"));
    await guards.checkAccess(ctx, " bearer   s3cret ");
  });
});
