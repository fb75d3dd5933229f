import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { MetricsPoint } from "../core/metrics-history.ts";
import type { NodeLoad } from "../core/node-load.ts";
import { sampleToMessage } from "../faces/corral/metrics-service.ts";
import type { PeerFeed } from "../faces/face-context.ts";
import { type ControllerPeerService, ReplicateRequestSchema } from "../gen/corral/v1/peers_pb.ts";
import type { Logger } from "../observability/logger.ts";

export interface PeerReplicatorOptions {
  /** This controller's name (as the controller registry lists it). */
  readonly name: string;
  /** The controllers alive now, this one included. */
  readonly peers: () => Promise<readonly { readonly name: string; readonly clusterAddress: string }[]>;
  readonly client: (clusterAddress: string) => Promise<Client<typeof ControllerPeerService>>;
  readonly everyMs: number;
  /** Samples one flush may carry; beyond, new ones wait for nothing and are dropped (counted, logged). */
  readonly maxSamples: number;
  /** Deadline of one Replicate call. */
  readonly callTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * Sends the other controllers, every `everyMs`, the metrics samples and heartbeat load figures this
 * controller received since the last send, in one Replicate call each. Best effort: a peer that cannot
 * be reached misses that batch (the next one carries fresher figures; its history has a gap there), and
 * a slow peer holds back nothing but its own call.
 */
export class PeerReplicator implements PeerFeed {
  readonly #o: PeerReplicatorOptions;
  #samples = new Map<string, MetricsPoint[]>();
  #sampleCount = 0;
  #dropped = 0;
  #loads = new Map<string, NodeLoad>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  /** Peers whose last call failed: each failure is logged once, and the recovery too. */
  readonly #failing = new Set<string>();
  #closed = false;

  constructor(options: PeerReplicatorOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.#flush(), this.#o.everyMs);
    this.#timer.unref();
  }

  samples(nodeId: string, points: readonly MetricsPoint[]): void {
    if (this.#closed || points.length === 0) return;
    const room = this.#o.maxSamples - this.#sampleCount;
    if (room < points.length) this.#dropped += points.length - Math.max(0, room);
    if (room <= 0) return;
    const kept = points.length > room ? points.slice(-room) : points;
    const list = this.#samples.get(nodeId);
    if (list === undefined) this.#samples.set(nodeId, [...kept]);
    else list.push(...kept);
    this.#sampleCount += kept.length;
  }

  load(nodeId: string, load: NodeLoad): void {
    if (!this.#closed) this.#loads.set(nodeId, load);
  }

  #flush(): void {
    if (this.#flushing !== undefined || (this.#sampleCount === 0 && this.#loads.size === 0)) return;
    const request = create(ReplicateRequestSchema, {
      from: this.#o.name,
      samples: [...this.#samples].map(([nodeId, points]) => ({
        nodeId,
        samples: points.map(sampleToMessage),
      })),
      loads: [...this.#loads].map(([nodeId, load]) => ({
        nodeId,
        cpuUsage: load.cpuUsage,
        memoryUsedMb: load.memoryUsedMb,
        atUnixMs: load.at,
      })),
    });
    if (this.#dropped > 0) {
      this.#o.logger.warn(
        { dropped: this.#dropped, kept: this.#sampleCount },
        "more metrics samples than one replication batch holds; the rest were not passed on",
      );
    }
    this.#samples = new Map();
    this.#sampleCount = 0;
    this.#dropped = 0;
    this.#loads = new Map();
    this.#flushing = this.#send(request)
      .catch((error: unknown) => this.#o.logger.warn({ err: error }, "could not list the other controllers"))
      .finally(() => {
        this.#flushing = undefined;
      });
  }

  async #send(request: ReturnType<typeof create<typeof ReplicateRequestSchema>>): Promise<void> {
    const peers = (await this.#o.peers()).filter((peer) => peer.name !== this.#o.name);
    await Promise.all(
      peers.map(async (peer) => {
        try {
          const client = await this.#o.client(peer.clusterAddress);
          await client.replicate(request, { timeoutMs: this.#o.callTimeoutMs });
          if (this.#failing.delete(peer.name))
            this.#o.logger.info({ peer: peer.name }, "replicating to the controller again");
        } catch (error) {
          if (this.#failing.has(peer.name)) return;
          this.#failing.add(peer.name);
          this.#o.logger.warn(
            { peer: peer.name, address: peer.clusterAddress, err: (error as Error).message },
            "could not pass metrics and loads on to a controller; it misses them until it answers",
          );
        }
      }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#flushing;
  }
}
