import { test } from "node:test";
import assert from "node:assert/strict";
import { QUOTE_CHARS, notFound, quote } from "./errors.ts";

test("quote shows a short value as JSON and a long one as a prefix and its length", () => {
  assert.equal(quote("vk"), '"vk"');
  assert.equal(quote("a".repeat(QUOTE_CHARS)), JSON.stringify("a".repeat(QUOTE_CHARS)));
  assert.equal(quote("b".repeat(1_048_576)), `${JSON.stringify("b".repeat(QUOTE_CHARS))}… (1048576 chars)`);
  assert.equal(quote('say "hi"\n'), '"say \\"hi\\"\\n"');
  // A surrogate pair at the cut is kept whole or left out, never halved.
  const emoji = "x".repeat(QUOTE_CHARS - 1) + "😀".repeat(10);
  assert.equal(quote(emoji), `${JSON.stringify("x".repeat(QUOTE_CHARS - 1))}… (${emoji.length} chars)`);
  // Not a string: JSON too, bounded the same way.
  assert.equal(quote(5), "5");
  assert.equal(quote(undefined), "undefined");
  assert.equal(quote(10n), "10");
  assert.match(quote({ k: "v".repeat(500) }), /^\{"k":"v{58}… \(508 chars\)$/);
});

test("notFound quotes the id", () => {
  assert.equal(notFound("account", "z".repeat(100_000)).message, `account ${JSON.stringify("z".repeat(QUOTE_CHARS))}… (100000 chars) not found`);
});
