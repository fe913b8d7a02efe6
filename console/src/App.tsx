import { useMemo, useRef, useState } from "react";
import { Code } from "@connectrpc/connect";
import { TransportProvider } from "@connectrpc/connect-query";
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createConsoleTransport } from "./api/transport.ts";
import { describeError, isCode, retryable } from "./api/errors.ts";
import { SessionProvider } from "./session/session.tsx";
import { SignIn } from "./pages/SignIn.tsx";
import { Shell } from "./Shell.tsx";

/** The token lives only here, for this tab's session: never in a URL, a cookie or localStorage. */
const TOKEN_KEY = "conveer.token";

/**
 * The console's root: one transport (the session's bearer token on every call), one query cache.
 * Any call the server refuses as UNAUTHENTICATED shows the sign-in form with the server's message.
 */
export function App() {
  const [token, setToken] = useState(() => sessionStorage.getItem(TOKEN_KEY) ?? "");
  const [refused, setRefused] = useState<string | undefined>();
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const transport = useMemo(() => createConsoleTransport(() => tokenRef.current), []);
  const queryClient = useMemo(() => {
    const onError = (err: unknown) => {
      if (isCode(err, Code.Unauthenticated)) setRefused(describeError(err).message);
    };
    return new QueryClient({
      queryCache: new QueryCache({ onError }),
      mutationCache: new MutationCache({ onError }),
      defaultOptions: {
        queries: { retry: (n, err) => n < 2 && retryable(err), staleTime: 5_000, refetchOnWindowFocus: false },
      },
    });
  }, []);
  const switchToken = (t: string) => {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    tokenRef.current = t;
    setToken(t);
    setRefused(undefined);
    queryClient.clear();
  };
  return (
    <TransportProvider transport={transport}>
      <QueryClientProvider client={queryClient}>
        {refused !== undefined ? (
          <SignIn message={refused} hadToken={Boolean(token)} onSignIn={switchToken} />
        ) : (
          <SessionProvider signedIn={Boolean(token)} signOut={() => switchToken("")}>
            <Shell />
          </SessionProvider>
        )}
      </QueryClientProvider>
    </TransportProvider>
  );
}
