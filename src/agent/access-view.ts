import { setTimeout as sleep } from "node:timers/promises";
import type { PeerCertificate } from "node:tls";
import { Backoff } from "../base/backoff.ts";
import { CorralError } from "../base/errors.ts";
import type { NodeRecord } from "../core/nodes/node.ts";
import { AgentService, type WatchAccessResponse } from "../gen/corral/v1/agent_pb.ts";
import { NodeRole } from "../gen/corral/v1/nodes_pb.ts";
import type { Logger } from "../observability/logger.ts";
import { fromConnectError } from "../rpc/connect-errors.ts";
import { normalizeSerial } from "../security/certificate-inventory.ts";
import type { Principal } from "../security/principal.ts";
import { type PrincipalLookups, resolveCertificatePrincipal } from "../security/principal-resolver.ts";
import type { ControllerLink } from "./controller-link.ts";

type Member = Pick<NodeRecord, "id" | "role" | "status">;

/**
 * The controller's revocation list and membership as this agent last heard them, kept current by
 * AgentService/WatchAccess (pushed on every change, never fetched per call), so the agent's listener
 * checks a caller's certificate exactly as the controller's does (`resolveCertificatePrincipal`).
 * Until the first view has arrived it knows nothing, and says so: `resolve` refuses with UNAVAILABLE.
 * When the stream breaks it keeps the last view and opens the stream again; each new stream starts
 * with a whole view, so nothing missed in between is lost.
 */
export class AccessView implements PrincipalLookups, AsyncDisposable {
  readonly #link: Pick<ControllerLink, "client" | "state">;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  #revoked = new Set<string>();
  #members = new Map<string, Member>();
  #synced = false;
  #toldUnimplemented = false;
  #loop: Promise<void> | undefined;

  constructor(options: { link: Pick<ControllerLink, "client" | "state">; logger: Logger }) {
    this.#link = options.link;
    this.#logger = options.logger;
  }

  /** Whether a whole view has arrived since the agent started. */
  get synced(): boolean {
    return this.#synced;
  }

  async isRevoked(serial: string): Promise<boolean> {
    return this.#revoked.has(normalizeSerial(serial));
  }

  async member(id: string): Promise<Member | undefined> {
    return this.#members.get(id);
  }

  /** The caller's principal, checked against the view; UNAVAILABLE while there is none yet. */
  async resolve(certificate: PeerCertificate): Promise<Principal> {
    if (!this.#synced) throw notYetChecked();
    return resolveCertificatePrincipal(certificate, this);
  }

  start(): void {
    const signal = this.#stop.signal;
    this.#loop ??= (async () => {
      const backoff = new Backoff(100, 5_000);
      while (!signal.aborted) {
        if (this.#link.state.value !== "CONNECTED") {
          // Woken by the next state change rather than by a timer.
          for await (const state of this.#link.state.watch(signal)) if (state === "CONNECTED") break;
          continue;
        }
        let waitMs: number | undefined;
        try {
          await this.#follow(signal, () => backoff.reset());
        } catch (error) {
          const corral = fromConnectError(error);
          if (signal.aborted) break;
          if (corral.code === "UNIMPLEMENTED") {
            // An older controller: ask again now and then (it may be upgraded), and say so once.
            if (!this.#toldUnimplemented)
              this.#logger.warn(
                "the controller offers no AgentService/WatchAccess (an older version): only controllers may call this node until it does",
              );
            this.#toldUnimplemented = true;
            waitMs = 60_000;
          } else this.#logger.debug({ err: corral.message }, "access view stream ended; opening it again");
        }
        await sleep(waitMs ?? backoff.next(), undefined, { signal }).catch(() => undefined);
      }
    })();
  }

  async #follow(signal: AbortSignal, onMessage: () => void): Promise<void> {
    const stream = this.#link.client(AgentService).watchAccess({}, { signal, timeoutMs: 0 });
    for await (const message of stream) {
      this.#apply(message);
      onMessage();
    }
  }

  #apply(message: WatchAccessResponse): void {
    if (message.reset) {
      this.#revoked = new Set();
      this.#members = new Map();
    }
    for (const serial of message.revokedSerials) this.#revoked.add(normalizeSerial(serial));
    for (const serial of message.unrevokedSerials) this.#revoked.delete(normalizeSerial(serial));
    for (const member of message.members) {
      const role = member.role === NodeRole.CONTROLLER ? "controller" : "agent";
      // Listed members have not left; the status is all the checks read of it.
      this.#members.set(member.id, { id: member.id, role, status: "ready" });
    }
    for (const id of message.goneMembers) this.#members.delete(id);
    if (message.reset && !this.#synced) {
      this.#synced = true;
      this.#logger.debug({ members: this.#members.size, revoked: this.#revoked.size }, "access view synced");
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The refusal while an agent has no view yet: retryable, and it says why. */
export function notYetChecked(): CorralError {
  return new CorralError(
    "UNAVAILABLE",
    "this node has not yet heard the cluster's revocation list and membership from its controller; try again shortly",
  );
}
