import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

/**
 * The console's one way to the API: Connect (JSON) to the origin that served the page, with the
 * session's token as a bearer header on every call. `token()` is read per call, so signing in or
 * out needs no new transport.
 */
export function createConsoleTransport(token: () => string): Transport {
  const bearer: Interceptor = (next) => (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
  return createConnectTransport({ baseUrl: window.location.origin, interceptors: [bearer] });
}
