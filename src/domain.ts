/**
 * Glossary — the words of the domain, each meaning one thing everywhere:
 * - account: an identity on a platform (login + sealed credentials + status).
 * - allocation: one account holding one proxy; at most `capacity` allocations per proxy.
 * - lease: the time an allocation lasts unless renewed (`expires_at`).
 * - activation: one rented phone number waiting for an SMS code.
 * - scenario: a multi-day plan of actions; task: one scenario running against one account;
 *   action: one platform call a task makes.
 */

/** The platforms of the seed; each is served by its own service and bound to a driver. */
export const PLATFORMS = ["vk", "telegram", "mail", "max"] as const;
/** A platform name. */
export type Platform = (typeof PLATFORMS)[number];

/** True when s names a platform. */
export function isPlatform(s: string): s is Platform {
  return (PLATFORMS as readonly string[]).includes(s);
}
