import { JoinRequestState, type PendingJoin } from "../../gen/corral/v1/join_pb.ts";
import { type Member, MemberEventType, type WatchMembersResponse } from "../../gen/corral/v1/members_pb.ts";
import type { MetricsSample } from "../../gen/corral/v1/metrics_pb.ts";
import {
  type Model,
  ModelEventType,
  PlacementState,
  type WatchModelsResponse,
} from "../../gen/corral/v1/models_pb.ts";
import {
  type Node,
  NodeEventType,
  NodeStatus,
  type WatchNodesResponse,
} from "../../gen/corral/v1/nodes_pb.ts";
import type { Clients } from "../api/clients.ts";
import { errorText } from "../api/errors.ts";
import { follow, type LinkState } from "../api/follow.ts";

export interface ClusterEventLine {
  readonly id: number;
  readonly at: number;
  readonly kind: "node" | "request" | "model" | "member" | "link";
  readonly text: string;
  readonly tone: "good" | "warn" | "bad" | "info";
}

export interface ClusterSnapshot {
  readonly nodes: ReadonlyMap<string, Node>;
  readonly requests: ReadonlyMap<string, PendingJoin>;
  readonly models: ReadonlyMap<string, Model>;
  readonly members: ReadonlyMap<string, Member>;
  /** Each node's newest metrics sample (CPU, memory, network, temperature), by node id. */
  readonly latest: ReadonlyMap<string, MetricsSample>;
  readonly events: readonly ClusterEventLine[];
  readonly link: LinkState;
  readonly linkError: string;
  /** Bumped on every change, so React can tell snapshots apart. */
  readonly version: number;
}

const maxEvents = 200;

export const statusText: Record<NodeStatus, string> = {
  [NodeStatus.UNSPECIFIED]: "unknown",
  [NodeStatus.PENDING]: "pending",
  [NodeStatus.READY]: "ready",
  [NodeStatus.SUSPECT]: "suspect",
  [NodeStatus.DOWN]: "down",
  [NodeStatus.LEFT]: "left",
};

export const placementText: Record<PlacementState, string> = {
  [PlacementState.UNSPECIFIED]: "unknown",
  [PlacementState.UNASSIGNED]: "unassigned",
  [PlacementState.PLACED]: "placed",
  [PlacementState.PARTIAL]: "partial",
  [PlacementState.UNPLACED]: "unplaced",
};

const toneOfStatus = (status: NodeStatus): ClusterEventLine["tone"] =>
  status === NodeStatus.READY
    ? "good"
    : status === NodeStatus.SUSPECT
      ? "warn"
      : status === NodeStatus.DOWN
        ? "bad"
        : "info";

/**
 * The cluster as the page sees it, kept live by the controller's watch streams (nodes, join requests,
 * models, members). Each stream reconnects by itself; a reconnect replaces what it built with a fresh
 * snapshot. Listeners are told at most once per animation frame, so a burst of 1 000 changes is one
 * render.
 */
export class ClusterStore {
  #snapshot: ClusterSnapshot = {
    nodes: new Map(),
    requests: new Map(),
    models: new Map(),
    members: new Map(),
    latest: new Map(),
    events: [],
    link: "connecting",
    linkError: "",
    version: 0,
  };
  readonly #listeners = new Set<() => void>();
  #scheduled = false;
  #eventId = 0;
  #nodes = new Map<string, Node>();
  #requests = new Map<string, PendingJoin>();
  #models = new Map<string, Model>();
  #members = new Map<string, Member>();
  #latest = new Map<string, MetricsSample>();
  #events: ClusterEventLine[] = [];
  #link: LinkState = "connecting";
  #linkError = "";
  #nodesSynced = false;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  readonly getSnapshot = (): ClusterSnapshot => this.#snapshot;

  /**
   * One stream (SessionService.WatchCluster) carries the node, model, member and join-request watches:
   * a browser has only six HTTP/1.1 connections per origin, and each open stream holds one.
   */
  start(clients: Clients, signal: AbortSignal): void {
    const nodes = this.#nodeWatch();
    const models = this.#modelWatch();
    const members = this.#memberWatch();
    follow(
      (s) => clients.session.watchCluster({}, { signal: s }),
      {
        onConnect: () => {
          nodes.reset();
          models.reset();
          members.reset();
        },
        onState: (state, error) => {
          const wasLive = this.#link === "live";
          this.#link = state;
          this.#linkError = error === undefined ? "" : errorText(error);
          if (wasLive && state !== "live") this.#event("link", "lost the controller; reconnecting", "bad");
          if (!wasLive && state === "live" && this.#nodesSynced)
            this.#event("link", "connected to the controller again", "good");
          this.#changed();
        },
        onItem: ({ event }) => {
          switch (event.case) {
            case "node":
              nodes.apply(event.value);
              break;
            case "model":
              models.apply(event.value);
              break;
            case "member":
              members.apply(event.value);
              break;
            case "joinRequests":
              this.#requests = new Map(event.value.requests.map((r) => [r.id.toString(), r]));
              break;
            case "metrics": {
              const sample = event.value.samples[event.value.samples.length - 1];
              if (sample !== undefined) this.#latest.set(event.value.nodeId, sample);
              break;
            }
            case "joinRequest":
              if (event.value.request !== undefined) this.#request(event.value.request);
              break;
          }
          this.#changed();
        },
      },
      signal,
    );
  }

  #nodeWatch() {
    let pending = new Map<string, Node>();
    let syncing = true;
    return {
      reset: () => {
        pending = new Map();
        syncing = true;
      },
      apply: (event: WatchNodesResponse) => {
        const node = event.node;
        if (event.type === NodeEventType.SYNCED) {
          syncing = false;
          if (this.#nodesSynced)
            for (const [id, after] of pending) {
              const before = this.#nodes.get(id);
              if (before !== undefined && before.status !== after.status) this.#nodeEvent(before, after);
            }
          this.#nodes = pending;
          this.#nodesSynced = true;
        } else if (node === undefined) {
          return;
        } else if (syncing) {
          if (event.type === NodeEventType.DELETED) pending.delete(node.id);
          else pending.set(node.id, node);
        } else if (event.type === NodeEventType.PUT) {
          const before = this.#nodes.get(node.id);
          if (before === undefined)
            this.#event(
              "node",
              `${node.name} joined (${statusText[node.status]})`,
              toneOfStatus(node.status),
            );
          else if (before.status !== node.status) this.#nodeEvent(before, node);
          this.#nodes.set(node.id, node);
        } else if (event.type === NodeEventType.DELETED) {
          this.#nodes.delete(node.id);
          this.#event("node", `${node.name} was removed`, "info");
        }
      },
    };
  }

  #request(request: PendingJoin): void {
    const id = request.id.toString();
    const before = this.#requests.get(id);
    if (before === undefined && request.state === JoinRequestState.PENDING)
      this.#event("request", `${request.name} asks to join from ${request.sourceAddress}`, "warn");
    else if (before !== undefined && before.state !== request.state) {
      const verb =
        request.state === JoinRequestState.ACCEPTED
          ? "accepted"
          : request.state === JoinRequestState.REJECTED
            ? "rejected"
            : "expired";
      this.#event(
        "request",
        `${request.name}'s join request ${verb}${request.decidedBy ? ` by ${request.decidedBy}` : ""}`,
        request.state === JoinRequestState.ACCEPTED ? "good" : "info",
      );
    }
    this.#requests.set(id, request);
  }

  #modelWatch() {
    let pending = new Map<string, Model>();
    let syncing = true;
    return {
      reset: () => {
        pending = new Map();
        syncing = true;
      },
      apply: (event: WatchModelsResponse) => {
        const model = event.model;
        if (event.type === ModelEventType.SYNCED) {
          syncing = false;
          this.#models = pending;
        } else if (model === undefined) {
          return;
        } else if (syncing) {
          if (event.type === ModelEventType.DELETED) pending.delete(model.id);
          else pending.set(model.id, model);
        } else if (event.type === ModelEventType.PUT) {
          const before = this.#models.get(model.id);
          if (before === undefined) this.#event("model", `model ${model.name} added`, "info");
          else if (before.state !== model.state || before.placedLayers !== model.placedLayers)
            this.#event(
              "model",
              `model ${model.name}: ${placementText[model.state]}, ${model.placedLayers}/${model.layerCount} layers`,
              model.state === PlacementState.PLACED ? "good" : "warn",
            );
          this.#models.set(model.id, model);
        } else if (event.type === ModelEventType.DELETED) {
          this.#models.delete(model.id);
          this.#event("model", `model ${model.name} removed`, "info");
        }
      },
    };
  }

  #memberWatch() {
    let pending = new Map<string, Member>();
    let syncing = true;
    return {
      reset: () => {
        pending = new Map();
        syncing = true;
      },
      apply: (event: WatchMembersResponse) => {
        const member = event.member;
        if (event.type === MemberEventType.SYNCED) {
          syncing = false;
          this.#members = pending;
          return;
        }
        if (member === undefined) return;
        const target = syncing ? pending : this.#members;
        if (event.type === MemberEventType.SNAPSHOT || event.type === MemberEventType.PUT)
          target.set(member.host, member);
        else if (event.type === MemberEventType.DELETED) target.delete(member.host);
      },
    };
  }

  #nodeEvent(before: Node, after: Node): void {
    this.#event(
      "node",
      `${after.name}: ${statusText[before.status]} → ${statusText[after.status]}`,
      toneOfStatus(after.status),
    );
  }

  #event(kind: ClusterEventLine["kind"], text: string, tone: ClusterEventLine["tone"]): void {
    this.#eventId += 1;
    this.#events = [{ id: this.#eventId, at: Date.now(), kind, text, tone }, ...this.#events].slice(
      0,
      maxEvents,
    );
  }

  #changed(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    const flush = () => {
      this.#scheduled = false;
      this.#snapshot = {
        // Copies: the maps above change in place, a snapshot must not.
        nodes: new Map(this.#nodes),
        requests: new Map(this.#requests),
        models: new Map(this.#models),
        members: new Map(this.#members),
        latest: new Map(this.#latest),
        events: this.#events,
        link: this.#link,
        linkError: this.#linkError,
        version: this.#snapshot.version + 1,
      };
      for (const listener of this.#listeners) listener();
    };
    // A hidden tab gets no animation frames; a timeout keeps it current anyway.
    if (typeof document !== "undefined" && document.visibilityState === "visible")
      requestAnimationFrame(flush);
    else setTimeout(flush, 50);
  }
}
