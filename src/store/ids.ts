import { randomBytes } from "node:crypto";
import { invalidArgument, quote } from "../errors.ts";

/**
 * Creates 24-hex, time-ordered ids (the seed's shape, like a MongoDB ObjectId): 4 bytes of Unix
 * seconds, 5 random bytes per generator, and a 3-byte counter, so ids sort by creation time.
 */
export function createIdGenerator(): () => string {
  const random = randomBytes(5).toString("hex");
  let counter = randomBytes(3).readUIntBE(0, 3);
  return () => {
    counter = (counter + 1) & 0xffffff;
    const secs = Math.floor(Date.now() / 1000);
    return secs.toString(16).padStart(8, "0") + random + counter.toString(16).padStart(6, "0");
  };
}

/** True for a well-formed id (24 lowercase hex digits). */
export function isId(s: string): boolean {
  return /^[0-9a-f]{24}$/.test(s);
}

/** INVALID_ARGUMENT unless id is a 24-hex id. */
export function checkId(id: string, field: string): void {
  if (!id) throw invalidArgument(field, "is required (a 24-hex id)");
  if (!isId(id)) throw invalidArgument(field, `must be a 24-hex id like 507f1f77bcf86cd799439011, got ${quote(id)}`);
}
