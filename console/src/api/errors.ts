import { Code, ConnectError } from "@connectrpc/connect";

/** The server's own message and code name, as the operator should read them. */
export function describeError(err: unknown): { code: string; message: string } {
  const e = ConnectError.from(err);
  return { code: Code[e.code] ?? String(e.code), message: e.rawMessage || e.message };
}

/** True when the error is the given code. */
export function isCode(err: unknown, code: Code): boolean {
  return err instanceof ConnectError && err.code === code;
}

/** Errors worth a retry: the store or a peer was briefly away, or the request never reached the server (Unknown: a network error in fetch). */
export function retryable(err: unknown): boolean {
  return err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded || err.code === Code.Unknown);
}
