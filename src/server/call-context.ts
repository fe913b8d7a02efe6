import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues } from "@connectrpc/connect";
import type { ContextValues, HandlerContext } from "@connectrpc/connect";
import { createDeadlineSignal, createLinkedAbortController } from "@connectrpc/connect/protocol";
import type { Principal } from "../auth/tokens.ts";
import { peerKey, principalKey } from "./service-binding.ts";

/** What a call's context is made of; `requestHeader` is read only when a handler asks for it. */
export type CallContextInit = {
  service: DescService;
  method: DescMethod;
  protocolName: string;
  url: string;
  /** The caller's deadline, epoch ms; undefined when it set none. */
  deadline: number | undefined;
  requestSignal?: AbortSignal;
  shutdownSignal?: AbortSignal;
  requestHeader?: () => Headers;
  principal: Principal | undefined;
  peer: string;
};

/**
 * A handler's context (Connect's HandlerContext), built lazily: its signal (an AbortController
 * linked to the client's cancel, the process's shutdown and a deadline timer) and its headers are
 * made only when a handler reads them. Most calls read neither; Connect's createHandlerContext
 * made all of them for every call (measured: most of the call plumbing's CPU in GetAccount).
 * `abort` ends it once the call is answered: a signal made is aborted and its timer and links
 * released; one asked for afterwards is born aborted.
 */
export class CallContext implements HandlerContext {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly protocolName: string;
  readonly requestMethod = "POST";
  readonly url: string;
  readonly values: ContextValues = createContextValues();
  readonly #init: CallContextInit;
  #signal: { signal: AbortSignal; abort(reason: unknown): void } | undefined;
  #ended: { reason: unknown } | undefined;
  #requestHeader: Headers | undefined;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(init: CallContextInit) {
    this.#init = init;
    this.service = init.service;
    this.method = init.method;
    this.protocolName = init.protocolName;
    this.url = init.url;
    this.values.set(principalKey, init.principal);
    this.values.set(peerKey, init.peer);
  }

  readonly timeoutMs = (): number | undefined => (this.#init.deadline === undefined ? undefined : this.#init.deadline - Date.now());

  get signal(): AbortSignal {
    if (this.#ended) return AbortSignal.abort(this.#ended.reason);
    if (!this.#signal) {
      const deadline = createDeadlineSignal(this.timeoutMs());
      const linked = createLinkedAbortController(deadline.signal, this.#init.requestSignal, this.#init.shutdownSignal);
      this.#signal = {
        signal: linked.signal,
        abort(reason) {
          deadline.cleanup();
          linked.abort(reason);
        },
      };
    }
    return this.#signal.signal;
  }

  get requestHeader(): Headers {
    return (this.#requestHeader ??= this.#init.requestHeader?.() ?? new Headers());
  }

  get responseHeader(): Headers {
    return (this.#responseHeader ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.#responseTrailer ??= new Headers());
  }

  /** Ends the context: its signal, if one was made, is aborted with `reason`. */
  abort(reason: unknown): void {
    if (this.#ended) return;
    this.#ended = { reason };
    this.#signal?.abort(reason);
  }
}
