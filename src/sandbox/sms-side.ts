/**
 * The sandbox's SMS side as plain rules over the world: number pools, rentals (rent, cancel,
 * finish, expiry with refunds), the balance, and delivering an SMS to a rented number.
 */
import { randomBytes } from "node:crypto";
import { PLATFORMS, isPlatform } from "../domain.ts";
import { quote } from "../errors.ts";
import type { SandboxContext } from "./sandbox-context.ts";
import { SandboxError, bad, missing, own, str } from "./sandbox-error.ts";
import type { Body } from "./sandbox-error.ts";
import { changed } from "./sandbox-world.ts";
import type { SandboxRental, SandboxSmsEvent } from "./sandbox-world.ts";

/** The SMS side: countries with number pools (one per service and country), prices and balance in RUB. */
export type SmsSettings = { startBalance: number; price: number; countries: string[]; numbersPerPool: number; rentalTtlMs: number };

/** 1000.00 RUB, 10.00 per number, ru/kz/by, 50 numbers per pool, 20 min rentals. */
export const DEFAULT_SMS: SmsSettings = { startBalance: 1000, price: 10, countries: ["ru", "kz", "by"], numbersPerPool: 50, rentalTtlMs: 20 * 60_000 };
const DIAL: Record<string, string> = { ru: "7", kz: "7", by: "375", ua: "380", uz: "998", am: "374", ge: "995", us: "1", de: "49" };
/** Delivered messages kept for streams that reconnect. */
const MAX_EVENTS = 1000;

/** The numbers of the pool for `service` in `country` (none when either is not offered). */
export function poolPhones(sms: SmsSettings, service: string, country: string): string[] {
  const si = (PLATFORMS as readonly string[]).indexOf(service);
  const ci = sms.countries.indexOf(country);
  if (si < 0 || ci < 0) return [];
  const prefix = `+${DIAL[country] ?? "999"}99${si}${ci % 10}`;
  return Array.from({ length: sms.numbersPerPool }, (_, i) => prefix + String(i + 1).padStart(5, "0"));
}

/** Moves an active rental to an end status (out of the active index). */
function close(ctx: SandboxContext, r: SandboxRental, status: "expired" | "cancelled" | "finished"): void {
  r.status = status;
  if (ctx.activeRentals.get(r.phone) === r) ctx.activeRentals.delete(r.phone);
}

/** Ends the rental, refunding it when it got no code. */
function end(ctx: SandboxContext, r: SandboxRental, status: "expired" | "cancelled"): void {
  close(ctx, r, status);
  if (r.codes === 0) {
    r.refunded = true;
    ctx.world.sms.balanceKop += r.priceKop;
  }
  changed(ctx);
}

/** Ends rentals past their expiry (refunding those that got no code). */
export function sweepRentals(ctx: SandboxContext): void {
  const t = ctx.now();
  for (const r of ctx.activeRentals.values()) if (t >= r.expiresAt) end(ctx, r, "expired");
}

/** Rents a free number of `service`'s pool in `country` (default ru) and charges the price. */
export function rent(ctx: SandboxContext, b: Body): { ref: string; phone: string; price: number; currency: "RUB"; expires_at: string } {
  sweepRentals(ctx);
  const { world, sms } = ctx;
  const service = str(b, "service", { required: true });
  const country = (str(b, "country") || "ru").toLowerCase();
  const operator = str(b, "operator") || "any";
  if (!isPlatform(service)) throw new SandboxError("unknown_service", `service ${quote(service)} is not offered; one of ${PLATFORMS.join(", ")}`);
  const phone = poolPhones(sms, service, country).find((p) => !ctx.activeRentals.has(p));
  if (!phone) throw new SandboxError("no_numbers", `no free number for ${service} in ${country}`);
  const priceKop = Math.round(sms.price * 100);
  if (world.sms.balanceKop < priceKop) {
    throw new SandboxError("insufficient_balance", `balance ${(world.sms.balanceKop / 100).toFixed(2)} RUB is below the price ${(priceKop / 100).toFixed(2)} RUB`);
  }
  world.sms.balanceKop -= priceKop;
  const t = ctx.now();
  const r: SandboxRental = { ref: `rent_${randomBytes(6).toString("hex")}`, service, country, operator, phone, priceKop, status: "active", codes: 0, refunded: false, createdAt: t, expiresAt: t + sms.rentalTtlMs };
  world.sms.rentals[r.ref] = r;
  ctx.activeRentals.set(phone, r);
  changed(ctx);
  return { ref: r.ref, phone, price: priceKop / 100, currency: "RUB", expires_at: new Date(r.expiresAt).toISOString() };
}

/** The rental `ref` (after ending expired ones), or not_found. */
export function rental(ctx: SandboxContext, ref: string): SandboxRental {
  sweepRentals(ctx);
  const r = own(ctx.world.sms.rentals, ref);
  if (!r) throw missing("rental", ref);
  return r;
}

/** Cancels an active rental (refunded when it got no code); a rental already over stays as it is. */
export function cancel(ctx: SandboxContext, ref: string): { refunded: boolean; status: SandboxRental["status"] } {
  const r = rental(ctx, ref);
  if (r.status === "active") end(ctx, r, "cancelled");
  else if (r.status === "finished") return { refunded: false, status: r.status };
  return { refunded: r.refunded, status: r.status };
}

/** Finishes an active rental (no refund); a rental already over stays as it is. */
export function finish(ctx: SandboxContext, ref: string): { status: SandboxRental["status"] } {
  const r = rental(ctx, ref);
  if (r.status === "active") {
    close(ctx, r, "finished");
    changed(ctx);
  }
  return { status: r.status };
}

/** The balance in RUB (after refunding expired rentals). */
export function balance(ctx: SandboxContext): { balance: number; currency: "RUB" } {
  sweepRentals(ctx);
  return { balance: ctx.world.sms.balanceKop / 100, currency: "RUB" };
}

/** Adds `amount` RUB to the balance; answers the new balance. */
export function topUp(ctx: SandboxContext, amount: number): number {
  if (!Number.isFinite(amount) || amount <= 0) throw bad("amount must be a positive number of RUB");
  ctx.world.sms.balanceKop += Math.round(amount * 100);
  changed(ctx);
  return ctx.world.sms.balanceKop / 100;
}

/** Delivers an SMS to the active rental of `phone` for `service`; returns the event, or null when nobody rents that number. */
export function sendSms(ctx: SandboxContext, service: string, phone: string, text: string): SandboxSmsEvent | null {
  sweepRentals(ctx);
  const { world } = ctx;
  const active = ctx.activeRentals.get(phone);
  const r = active?.service === service ? active : undefined;
  if (!r) {
    ctx.log?.debug({ service, phone }, "sandbox SMS to a number nobody rents; dropped");
    return null;
  }
  r.codes++;
  const e: SandboxSmsEvent = { id: ++world.sms.eventSeq, ref: r.ref, phone, text, code: /\b\d{4,8}\b/.exec(text)?.[0] ?? "", at: ctx.now() };
  world.sms.events.push(e);
  if (world.sms.events.length > MAX_EVENTS) world.sms.events.splice(0, world.sms.events.length - MAX_EVENTS);
  for (const listener of ctx.smsListeners) listener(e);
  changed(ctx);
  return e;
}
