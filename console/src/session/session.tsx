import { createContext, useContext } from "react";
import type { ReactNode } from "react";
import { Code } from "@connectrpc/connect";
import { useQuery } from "@connectrpc/connect-query";
import { AdminService } from "../../../src/gen/conveer/v1/admin_pb.js";
import { describeError, isCode } from "../api/errors.ts";
import { grants } from "./scopes.ts";

/** Who the console acts as: known from WhoAmI, or unknown when the server cannot say. */
export type Identity =
  | { known: true; name: string; scopes: string[]; open: boolean }
  | { known: false; reason: string };

/** What a component may ask of the session. */
export type Session = { identity: Identity | undefined; signOut(): void; signedIn: boolean };

const SessionContext = createContext<Session>({ identity: undefined, signOut() {}, signedIn: false });

/** The session of the signed-in operator (or of open mode). */
export function useSession(): Session {
  return useContext(SessionContext);
}

/**
 * Asks WhoAmI once per token. A server that does not implement AdminService (UNIMPLEMENTED) leaves
 * the scopes unknown: every action stays enabled and the server decides.
 */
export function SessionProvider(props: { signedIn: boolean; signOut(): void; children: ReactNode }) {
  const who = useQuery(AdminService.method.whoAmI, {}, { staleTime: Infinity, retry: false });
  let identity: Identity | undefined;
  if (who.data) identity = { known: true, name: who.data.tokenName, scopes: who.data.scopes, open: who.data.open };
  else if (who.error) {
    identity = isCode(who.error, Code.Unimplemented)
      ? { known: false, reason: "this server does not answer WhoAmI yet (AdminService unimplemented)" }
      : { known: false, reason: describeError(who.error).message };
  }
  return <SessionContext value={{ identity, signOut: props.signOut, signedIn: props.signedIn }}>{props.children}</SessionContext>;
}

/** Whether an action needing `scope` is allowed: false only when the scopes are known and lack it. */
export function useGate(scope: string): { allowed: boolean; note: string } {
  const { identity } = useSession();
  if (!identity || !identity.known) return { allowed: true, note: `needs ${scope} (scopes unknown: the server checks)` };
  if (grants(identity.scopes, scope)) return { allowed: true, note: `needs ${scope}` };
  return { allowed: false, note: `needs scope ${scope}` };
}
