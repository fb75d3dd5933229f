import { create, type MessageShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { MetricsPoint } from "../core/metrics/metrics-history.ts";
import type { NodeLoad } from "../core/nodes/node-load.ts";
import { sampleToMessage } from "../faces/corral/metrics-service.ts";
import type { PeerFeed } from "../faces/face-context.ts";
import {
  type ControllerPeerService,
  NodeLoadFiguresSchema,
  NodeSamplesSchema,
  ReplicateRequestSchema,
} from "../gen/corral/v1/peers_pb.ts";
import type { Logger } from "../observability/logger.ts";

export interface PeerReplicatorOptions {
  /** This controller's name (sent with each batch) and the address it advertises (never sent to). */
  readonly name: string;
  readonly address: string;
  /** The cluster addresses of the controllers alive now, this one included (as last read). */
  readonly peers: () => readonly string[];
  readonly client: (clusterAddress: string) => Promise<Client<typeof ControllerPeerService>>;
  readonly everyMs: number;
  /** Samples held for one flush; beyond, new ones are dropped (counted, logged). */
  readonly maxSamples: number;
  /** Estimated bytes one Replicate call may carry; a flush with more is sent as several calls. */
  readonly maxCallBytes: number;
  /** Deadline of one Replicate call. */
  readonly callTimeoutMs: number;
  readonly logger: Logger;
}

type Request = MessageShape<typeof ReplicateRequestSchema>;

/**
 * Sends the other controllers, every `everyMs`, the metrics samples and heartbeat load figures this
 * controller received since the last send. Best effort: a peer that cannot be reached misses that
 * batch (the next one carries fresher figures; its history has a gap there), and a peer still busy
 * with an earlier batch skips this one — a slow peer holds back nobody else.
 */
export class PeerReplicator implements PeerFeed {
  readonly #o: PeerReplicatorOptions;
  #samples = new Map<string, MetricsPoint[]>();
  #sampleCount = 0;
  #dropped = 0;
  #loads = new Map<string, NodeLoad>();
  #timer: NodeJS.Timeout | undefined;
  /** Calls in flight, by peer address. */
  readonly #busy = new Map<string, Promise<void>>();
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
    if (this.#sampleCount === 0 && this.#loads.size === 0) return;
    if (this.#dropped > 0) {
      this.#o.logger.warn(
        { dropped: this.#dropped, kept: this.#sampleCount },
        "more metrics samples than one replication batch holds; the rest were not passed on",
      );
    }
    const requests = this.#requests();
    this.#samples = new Map();
    this.#sampleCount = 0;
    this.#dropped = 0;
    this.#loads = new Map();
    for (const peer of this.#o.peers()) {
      if (peer === this.#o.address || this.#busy.has(peer)) continue;
      const sending = this.#send(peer, requests).finally(() => this.#busy.delete(peer));
      this.#busy.set(peer, sending);
    }
  }

  /** What was heard since the last flush, as calls of at most `maxCallBytes` (estimated). */
  #requests(): Request[] {
    const requests: Request[] = [];
    let current = create(ReplicateRequestSchema, { from: this.#o.name });
    let bytes = 0;
    for (const [nodeId, points] of this.#samples) {
      // Generous: a sample's doubles and tags, plus each GPU's names and figures.
      const size = points.reduce((sum, p) => sum + 128 + 192 * p.gpus.length, 64);
      if (bytes > 0 && bytes + size > this.#o.maxCallBytes) {
        requests.push(current);
        current = create(ReplicateRequestSchema, { from: this.#o.name });
        bytes = 0;
      }
      current.samples.push(create(NodeSamplesSchema, { nodeId, samples: points.map(sampleToMessage) }));
      bytes += size;
    }
    current.loads = [...this.#loads].map(([nodeId, load]) =>
      create(NodeLoadFiguresSchema, {
        nodeId,
        cpuUsage: load.cpuUsage,
        memoryUsedMb: load.memoryUsedMb,
        atUnixMs: load.at,
      }),
    );
    requests.push(current);
    return requests;
  }

  async #send(peer: string, requests: readonly Request[]): Promise<void> {
    try {
      const client = await this.#o.client(peer);
      for (const request of requests) await client.replicate(request, { timeoutMs: this.#o.callTimeoutMs });
      if (this.#failing.delete(peer)) this.#o.logger.info({ peer }, "replicating to the controller again");
    } catch (error) {
      if (this.#failing.has(peer)) return;
      this.#failing.add(peer);
      this.#o.logger.warn(
        { peer, err: (error as Error).message },
        "could not pass metrics and loads on to a controller; it misses them until it answers",
      );
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all(this.#busy.values());
  }
}
