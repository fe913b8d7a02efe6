import { SmsProviderError } from "./provider.ts";
import type { DeliveredSms, Rental, SmsProvider } from "./provider.ts";

/**
 * An in-memory SmsProvider for the SMS domain's tests and benchmark only; never wired into the
 * app (the one provider Conveer ships is the sandbox). It holds a balance and a pool of numbers,
 * refunds cancelled rentals that got no code, and delivers a code when the test says so.
 */
export class FakeSmsProvider implements SmsProvider {
  readonly name: string;
  readonly currency: string;
  price: number;
  ttlMs: number;
  services: Set<string>;
  /** When set, every call fails with this error (an unreachable provider). */
  failWith: Error | undefined;
  readonly calls = { rent: 0, cancel: 0, finish: 0 };
  #balance: number;
  #free: string[];
  #seq = 0;
  readonly #rentals = new Map<string, { phone: string; price: number; codeCame: boolean; ended: boolean }>();
  readonly #listeners = new Set<(m: DeliveredSms) => void>();
  readonly #refByPhone = new Map<string, string>();

  constructor(opts: { name?: string; currency?: string; balance?: number; price?: number; numbers?: number; ttlMs?: number; services?: string[] } = {}) {
    this.name = opts.name ?? "fake";
    this.currency = opts.currency ?? "RUB";
    this.#balance = opts.balance ?? 1000;
    this.price = opts.price ?? 10;
    this.ttlMs = opts.ttlMs ?? 20 * 60_000;
    this.services = new Set(opts.services ?? ["vk", "telegram", "mail", "max"]);
    this.#free = Array.from({ length: opts.numbers ?? 10 }, (_, i) => `+7999${String(i).padStart(7, "0")}`);
  }

  async rent(req: { service: string; country: string; operator: string }): Promise<Rental> {
    this.calls.rent++;
    if (this.failWith) throw this.failWith;
    if (!this.services.has(req.service)) throw new SmsProviderError("unknown_service", `service ${req.service} is not offered`);
    if (this.#free.length === 0) throw new SmsProviderError("no_numbers", `no free numbers for ${req.service} in ${req.country}`);
    if (this.#balance < this.price) throw new SmsProviderError("insufficient_balance", `balance ${this.#balance} < price ${this.price}`);
    this.#balance -= this.price;
    const phone = this.#free.shift()!;
    const ref = `r${++this.#seq}`;
    this.#rentals.set(ref, { phone, price: this.price, codeCame: false, ended: false });
    this.#refByPhone.set(phone, ref);
    return { ref, phone, price: this.price, expiresAt: new Date(Date.now() + this.ttlMs) };
  }

  async cancel(ref: string): Promise<{ refunded: boolean }> {
    this.calls.cancel++;
    if (this.failWith) throw this.failWith;
    const r = this.#rentals.get(ref);
    if (!r || r.ended) throw new SmsProviderError("not_found", `no active rental ${ref}`);
    r.ended = true;
    this.#free.push(r.phone);
    if (r.codeCame) return { refunded: false };
    this.#balance += r.price;
    return { refunded: true };
  }

  async finish(ref: string): Promise<void> {
    this.calls.finish++;
    if (this.failWith) throw this.failWith;
    const r = this.#rentals.get(ref);
    if (!r || r.ended) throw new SmsProviderError("not_found", `no active rental ${ref}`);
    r.ended = true;
    this.#free.push(r.phone);
  }

  async balance(): Promise<number> {
    if (this.failWith) throw this.failWith;
    return this.#balance;
  }

  onMessage(listener: (m: DeliveredSms) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }

  /** Delivers an SMS with a code to a rental, as the provider's side would; answers false for an ended or unknown rental. */
  deliver(ref: string, code: string, text = `Your code: ${code}`): boolean {
    const r = this.#rentals.get(ref);
    if (!r || r.ended) return false;
    r.codeCame = true;
    const m: DeliveredSms = { ref, phone: r.phone, text, code, at: new Date() };
    for (const l of this.#listeners) l(m);
    return true;
  }

  /** Emits a message whatever the rental's state (a late or stray delivery). */
  emit(m: DeliveredSms): void {
    for (const l of this.#listeners) l(m);
  }

  /** The ref of the latest rental of a phone number. */
  refOf(phone: string): string | undefined {
    return this.#refByPhone.get(phone);
  }

  /** Subscribers now. */
  get listeners(): number {
    return this.#listeners.size;
  }

  /** The same provider (shared balance and rentals) without its message feed: another replica's view in tests. */
  withoutMessages(): SmsProvider {
    return {
      name: this.name,
      currency: this.currency,
      rent: (req) => this.rent(req),
      cancel: (ref) => this.cancel(ref),
      finish: (ref) => this.finish(ref),
      balance: () => this.balance(),
      onMessage: () => () => {},
      close: async () => {},
    };
  }
}
