import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";
import { systemPrincipal } from "../auth/tokens.ts";
import type { Config, ServiceName } from "../config/config.ts";
import { remoteClient } from "../server/clients.ts";
import { localClient } from "../server/local-client.ts";
import type { ServiceBinding } from "../server/service-binding.ts";
import { DESCRIPTORS } from "./descriptors.ts";

/** A typed client to a peer service, `who` naming the caller in the peer's audit records. */
export type PeerResolver = <S extends DescService>(name: ServiceName, who: string) => Client<S>;

/**
 * Decides once, from the configured services alone, how each peer is reached: a direct call when
 * it runs in this process, a gRPC client to its `*_SERVICE_GRPC_ADDR` when it does not. A local
 * peer's binding is looked up at its first call, so services can be mounted in any order. One
 * client per (peer, caller), reused by every call.
 */
export function createPeerResolver(config: Config, services: readonly ServiceName[], bindings: Partial<Record<ServiceName, ServiceBinding>>): PeerResolver {
  // Keyed by peer then caller: a lookup allocates nothing (warming asks for a platform peer per action).
  const clients = new Map<ServiceName, Map<string, Client<DescService>>>();
  return <S extends DescService>(name: ServiceName, who: string): Client<S> => {
    let byCaller = clients.get(name);
    if (!byCaller) clients.set(name, (byCaller = new Map()));
    let client = byCaller.get(who);
    if (!client) {
      client = services.includes(name)
        ? lazyClient(DESCRIPTORS[name], () => {
            const b = bindings[name];
            return b && localClient(b, systemPrincipal(who));
          })
        : remoteClient(DESCRIPTORS[name], {
            addr: config.addrs[name],
            token: config.token,
            tls: Boolean(config.tlsCert),
            caFile: config.caFile || undefined,
            certFile: config.clientCert || undefined,
            keyFile: config.clientKey || undefined,
          });
      byCaller.set(who, client);
    }
    return client as unknown as Client<S>;
  };
}

/**
 * A client whose methods build the real one at their first call; a call made before the binding
 * is mounted (only possible while the process starts) fails as UNAVAILABLE, like an unreachable peer.
 */
function lazyClient<S extends DescService>(service: S, build: () => Client<S> | undefined): Client<S> {
  type Methods = Record<string, (req: unknown, opts: unknown) => Promise<unknown>>;
  let client: Methods | undefined;
  const out: Methods = {};
  for (const m of service.methods) {
    out[m.localName] = (req, opts) => {
      client ??= build() as unknown as Methods | undefined;
      return client ? client[m.localName]!(req, opts) : Promise.reject(new ConnectError(`the ${service.typeName} of this process is still starting; retry later`, Code.Unavailable));
    };
  }
  return out as unknown as Client<S>;
}
