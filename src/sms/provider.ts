/**
 * An SMS-activation provider: rents phone numbers and delivers the codes sent to them. The project
 * ships one: the sandbox provider (src/sandbox/sandbox-sms-provider.ts), backed by the sandbox
 * platform's SMS side. The provider holds the balance, as a real one would.
 */

/** A rented number. */
export type Rental = { ref: string; phone: string; price: number; expiresAt: Date };

/** A message delivered to a rented number, with the code extracted. */
export type DeliveredSms = { ref: string; phone: string; text: string; code: string; at: Date };

/** What went wrong, in terms SMSService maps to status codes. */
export type SmsProviderErrorKind = "unknown_service" | "no_numbers" | "insufficient_balance" | "not_found" | "unavailable";

/** A provider failure. */
export class SmsProviderError extends Error {
  readonly kind: SmsProviderErrorKind;
  constructor(kind: SmsProviderErrorKind, message: string) {
    super(message);
    this.name = "SmsProviderError";
    this.kind = kind;
  }
}

/** An SMS-activation provider. */
export interface SmsProvider {
  readonly name: string;
  /** ISO 4217, e.g. "RUB". */
  readonly currency: string;
  /** Rents a number for a service (vk, telegram, mail, max) in a country; the price is taken from the balance. */
  rent(req: { service: string; country: string; operator: string }): Promise<Rental>;
  /** Ends a rental early; refunds when no code came. */
  cancel(ref: string): Promise<{ refunded: boolean }>;
  /** Marks a rental done (the code was used). */
  finish(ref: string): Promise<void>;
  /** The balance left. */
  balance(): Promise<number>;
  /** Subscribes to delivered messages (one subscription per process, not per waiter); returns unsubscribe. */
  onMessage(listener: (m: DeliveredSms) => void): () => void;
  /** Stops background connections. */
  close(): Promise<void>;
}
