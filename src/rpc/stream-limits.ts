import type { HandlerContext } from "@connectrpc/connect";
import { CorralError } from "../base/errors.ts";
import { defaults } from "../defaults.ts";
import { describePrincipal, type Principal } from "../security/principal.ts";
import type { ChainInterceptor } from "./call-chain.ts";
import { principalKey } from "./principal-context.ts";

export interface StreamLimitSettings {
  /** Open response streams one connection may hold. */
  readonly perConnection: number;
  /** Open response streams one principal may hold, over every connection and listener sharing these limits. */
  readonly perPrincipal: number;
}

/** Where an operator changes each limit; named in the refusal so the message says what to do. */
export interface StreamLimitKeys {
  readonly perConnection: string;
  readonly perPrincipal: string;
}

/** The controller's YAML keys. */
export const controllerStreamLimitKeys: StreamLimitKeys = {
  perConnection: "limits.streamsPerConnection",
  perPrincipal: "limits.streamsPerPrincipal",
};

/** Servers without a config of their own (an agent's listeners) use the defaults. */
export const defaultStreamLimitKeys: StreamLimitKeys = {
  perConnection: "streams.perConnection in src/defaults.ts",
  perPrincipal: "streams.perPrincipal in src/defaults.ts",
};

/**
 * Counts the response streams (server streaming and bidi) that are open, per connection and per
 * principal, and refuses the one past a limit with RESOURCE_EXHAUSTED before its handler runs. Without
 * it one client could open thousands of watches, each holding a store watcher and buffers. A count that
 * falls to zero is deleted, so the maps hold only what is open now.
 */
export class StreamLimits {
  readonly settings: StreamLimitSettings;
  readonly #keys: StreamLimitKeys;
  readonly #byConnection = new Map<string, number>();
  readonly #byPrincipal = new Map<string, number>();

  constructor(settings: StreamLimitSettings = defaults.streams, keys = defaultStreamLimitKeys) {
    for (const [name, value] of Object.entries(settings)) {
      if (!Number.isInteger(value) || value < 1)
        throw CorralError.invalidArgument(keys[name as keyof StreamLimitKeys], "must be at least 1");
    }
    this.settings = settings;
    this.#keys = keys;
  }

  /**
   * Takes a slot for one stream; the returned function gives it back (calling it again does nothing).
   * `principal` is a label (see principalLabel); `connection` is absent where the transport does not
   * say which connection carries the call (the web listener: HTTP/2 settings bound it there).
   */
  open(connection: string | undefined, principal: string): () => void {
    const { perConnection, perPrincipal } = this.settings;
    const onConnection = connection === undefined ? 0 : (this.#byConnection.get(connection) ?? 0);
    if (onConnection >= perConnection) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `this connection already has ${onConnection} streams open, the limit (${this.#keys.perConnection}); close a watch or use another connection`,
        { details: { limit: this.#keys.perConnection } },
      );
    }
    const ofPrincipal = this.#byPrincipal.get(principal) ?? 0;
    if (ofPrincipal >= perPrincipal) {
      throw new CorralError(
        "RESOURCE_EXHAUSTED",
        `${principal} already has ${ofPrincipal} streams open, the limit (${this.#keys.perPrincipal}); close some watches first`,
        { details: { limit: this.#keys.perPrincipal } },
      );
    }
    if (connection !== undefined) this.#byConnection.set(connection, onConnection + 1);
    this.#byPrincipal.set(principal, ofPrincipal + 1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      if (connection !== undefined) decrement(this.#byConnection, connection);
      decrement(this.#byPrincipal, principal);
    };
  }

  /** Streams open now, for tests and metrics. */
  counts(): { connections: number; principals: number; streams: number } {
    let streams = 0;
    for (const n of this.#byPrincipal.values()) streams += n;
    return { connections: this.#byConnection.size, principals: this.#byPrincipal.size, streams };
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/**
 * The principal as the limits count it. Callers without an identity of their own (anonymous, an
 * agent's local API) are counted per source host, so one of them cannot use up every other's share.
 * Long names are cut: the label goes into a status message.
 */
export function principalLabel(principal: Principal, host: string): string {
  const label =
    principal.kind === "anonymous"
      ? `anonymous caller from ${host || "an unknown address"}`
      : describePrincipal(principal);
  return label.length > 80 ? `${label.slice(0, 79)}…` : label;
}

export function isResponseStream(ctx: HandlerContext): boolean {
  const kind = ctx.method.methodKind;
  return kind === "server_streaming" || kind === "bidi_streaming";
}

/**
 * Runs innermost, after the caller is identified, on every listener. The slot is given back when the
 * call ends or as soon as it is cancelled (a handler blocked on its next event must not keep counting
 * against a client that has gone). Without a `listener` name only the principal's streams are counted:
 * the web listener's transport does not say which connection carries a call (its HTTP/2 settings bound
 * a connection there).
 */
export function limitStreams(limits: StreamLimits, listener?: string): ChainInterceptor {
  return async (ctx, next) => {
    if (!isResponseStream(ctx)) return next();
    const peer = ctx.peer;
    const release = limits.open(
      listener === undefined ? undefined : `${listener} ${peer}`,
      principalLabel(ctx.values.get(principalKey), hostOf(peer)),
    );
    const signal = ctx.signal;
    signal.addEventListener("abort", release, { once: true });
    try {
      await next();
    } finally {
      signal.removeEventListener("abort", release);
      release();
    }
  };
}

/** The host of a grpc-js peer string (`ipv4:127.0.0.1:5555`, `[::1]:5555`, `127.0.0.1:5555`). */
function hostOf(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, "");
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(bare);
  if (v6?.[1] !== undefined) return v6[1];
  return bare.replace(/:\d+$/, "");
}
