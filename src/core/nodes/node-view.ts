import type { Pause } from "../../base/pause.ts";
import type { Store } from "../../store/store.ts";
import type { StoreEvent } from "../../store/types.ts";
import type { NodeRecord } from "./node.ts";
import { decodeStoredNode } from "./node-codec.ts";
import type { NodeFilter } from "./node-filter.ts";
import { NodeIndex, pickMatching } from "./node-index.ts";
import { nodeKey, nodeKeyPrefix } from "./node-keys.ts";

export interface NodeViewOptions {
  /** How the view waits between attempts to reload (timers are the caller's: the core sets none). */
  pause: Pause;
  /** Told when the watch fails or a record cannot be read (the controller logs it). */
  report?: (problem: string, details: Record<string, unknown>) => void;
  /** Longest wait between attempts to reload after the watch failed; default 2 s. */
  maxRetryMs?: number;
}

/** A node as the view holds it: decoded once, frozen (readers share it), with the revision CAS needs. */
export interface ViewedNode {
  readonly key: string;
  readonly modRevision: number;
  readonly node: NodeRecord;
}

/**
 * Every node record in memory, decoded once per change, with indexes for the filters the APIs offer, so
 * reads cost neither a store read nor a JSON decode. The view lists `/nodes/` once and then follows the
 * store's watch (with etcd, every controller's view follows etcd's revisions; with SQLite, the one
 * controller's own commits). Writers tell it what they committed (`wrote`) as soon as the store
 * acknowledges, so a read after an acknowledged write on this controller sees it; each key keeps the
 * revision it was last written at, so the watch's later echo of the same write (or of an older one) is
 * skipped rather than applied twice. While it is not `ready` (before the first load, while it reloads
 * after its watch failed) readers go to the store instead.
 */
export class NodeView {
  readonly #store: Store;
  readonly #options: NodeViewOptions;
  /** By store key. */
  readonly #nodes = new Map<string, ViewedNode>();
  readonly #index = new NodeIndex();
  readonly #byName = new Map<string, Set<string>>();
  /** Keys this controller deleted ahead of the watch, with the revision; dropped once the watch passes it. */
  readonly #deletedAt = new Map<string, number>();
  /** Keys in list order (name, then id); rebuilt only when a node comes, goes or is renamed. */
  #ordered: string[] | undefined;
  #watched = 0;
  #ready = false;
  #closed = false;
  #version = 0;
  readonly #stop = new AbortController();
  #loop: Promise<void> = Promise.resolve();

  private constructor(store: Store, options: NodeViewOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** Loads every node and follows the store from there; resolves once the view is ready. */
  static async start(store: Store, options: NodeViewOptions): Promise<NodeView> {
    const view = new NodeView(store, options);
    const revision = await view.#load();
    view.#loop = view.#follow(revision);
    return view;
  }

  /** False while the view cannot vouch for being current: read the store instead. */
  get ready(): boolean {
    return this.#ready && !this.#closed;
  }

  /** Moves on every change the view takes in: callers may cache what they derive from it. */
  get version(): number {
    return this.#version;
  }

  /**
   * The revision the watch has delivered: every change up to it is in the view (this controller's own
   * later writes may be too), so a watch started from `revision + 1` misses nothing.
   */
  get revision(): number {
    return this.#watched;
  }

  get size(): number {
    return this.#nodes.size;
  }

  byId(id: string): ViewedNode | undefined {
    return this.#nodes.get(nodeKey(id));
  }

  /** Nodes named `name`: those that have not left first (at most one holds a name), then those that left. */
  byName(name: string): ViewedNode[] {
    const found: ViewedNode[] = [];
    for (const key of this.#byName.get(name) ?? []) {
      const viewed = this.#nodes.get(key);
      if (viewed !== undefined) found.push(viewed);
    }
    return found.sort((a, b) => Number(a.node.status === "left") - Number(b.node.status === "left"));
  }

  /** Matching nodes sorted by name, then id, with the revision the view reflects. */
  list(filter: NodeFilter): { nodes: NodeRecord[]; revision: number } {
    const candidates = this.#index.candidates(filter);
    if (candidates === undefined && isEmptyFilter(filter)) {
      const nodes: NodeRecord[] = [];
      for (const key of this.#order()) {
        const viewed = this.#nodes.get(key);
        if (viewed !== undefined) nodes.push(viewed.node);
      }
      return { nodes, revision: this.#watched };
    }
    const nodes = pickMatching(
      candidates,
      this.#allNodes(),
      (key) => this.#nodes.get(key)?.node,
      filter,
    ).sort(byNameThenId);
    return { nodes, revision: this.#watched };
  }

  /**
   * What this controller just committed under `/nodes/` (a put's value, or `undefined` for a delete), at
   * `revision`: applied now, so the writer's next read sees it.
   */
  wrote(key: string, value: string | undefined, revision: number): void {
    if (!this.#ready) return;
    this.#apply({
      type: value === undefined ? "delete" : "put",
      key,
      revision,
      ...(value === undefined ? {} : { value }),
    });
    if (value === undefined) this.#deletedAt.set(key, revision);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    await this.#loop;
  }

  async #load(): Promise<number> {
    const { items, revision } = await this.#store.list(nodeKeyPrefix);
    this.#nodes.clear();
    this.#index.clear();
    this.#byName.clear();
    this.#deletedAt.clear();
    this.#ordered = undefined;
    for (const kv of items) {
      const node = freeze(decodeStoredNode(kv.value, kv.key));
      this.#nodes.set(kv.key, { key: kv.key, modRevision: kv.modRevision, node });
      this.#index.add(kv.key, node);
      this.#named(node.name, kv.key, true);
    }
    this.#watched = revision;
    this.#version++;
    this.#ready = true;
    return revision;
  }

  async #follow(from: number): Promise<void> {
    let revision = from;
    let failures = 0;
    while (!this.#closed) {
      try {
        if (failures > 0) revision = await this.#load();
        failures = 0;
        const signal = this.#stop.signal;
        for await (const batch of this.#store.watch(revision + 1, { prefix: nodeKeyPrefix, signal })) {
          for (const event of batch) this.#fromWatch(event);
          const last = batch.at(-1)?.revision;
          if (last !== undefined) {
            revision = last;
            this.#watched = Math.max(this.#watched, last);
            for (const [key, at] of this.#deletedAt) if (at <= last) this.#deletedAt.delete(key);
          }
        }
      } catch (error) {
        if (this.#closed) return;
        this.#options.report?.("the node view lost its watch; reads go to the store until it has reloaded", {
          err: (error as Error).message,
        });
      }
      if (this.#closed) return;
      // The watch ended or failed: what it missed is unknown, so readers go to the store until reloaded.
      this.#ready = false;
      failures++;
      await this.#options.pause(
        Math.min(this.#options.maxRetryMs ?? 2_000, 50 * 2 ** failures),
        this.#stop.signal,
      );
    }
  }

  #fromWatch(event: StoreEvent): void {
    const deletedAt = this.#deletedAt.get(event.key);
    if (deletedAt !== undefined && event.revision <= deletedAt) return;
    this.#apply(event);
  }

  #apply(event: StoreEvent): void {
    const current = this.#nodes.get(event.key);
    // This controller's own write, applied when acknowledged, comes back through the watch: skip it.
    if (current !== undefined && event.revision <= current.modRevision) return;
    let next: NodeRecord | undefined;
    if (event.type === "put" && event.value !== undefined) {
      try {
        next = freeze(decodeStoredNode(event.value, event.key));
      } catch (error) {
        // A record the codec refuses is left out, as a plain read would have failed on it.
        this.#options.report?.("unreadable node record left out of the node view", {
          err: (error as Error).message,
          key: event.key,
        });
      }
    }
    if (current !== undefined) {
      this.#index.remove(event.key, current.node);
      this.#named(current.node.name, event.key, false);
    }
    if (next === undefined) this.#nodes.delete(event.key);
    else {
      this.#nodes.set(event.key, { key: event.key, modRevision: event.revision, node: next });
      this.#index.add(event.key, next);
      this.#named(next.name, event.key, true);
    }
    if (current === undefined || next === undefined || current.node.name !== next.name)
      this.#ordered = undefined;
    this.#version++;
  }

  #named(name: string, key: string, present: boolean): void {
    let keys = this.#byName.get(name);
    if (present) {
      if (keys === undefined) {
        keys = new Set();
        this.#byName.set(name, keys);
      }
      keys.add(key);
    } else if (keys !== undefined) {
      keys.delete(key);
      if (keys.size === 0) this.#byName.delete(name);
    }
  }

  *#allNodes(): Iterable<NodeRecord> {
    for (const viewed of this.#nodes.values()) yield viewed.node;
  }

  #order(): string[] {
    if (this.#ordered === undefined)
      this.#ordered = [...this.#nodes.values()]
        .sort((a, b) => byNameThenId(a.node, b.node))
        .map((viewed) => viewed.key);
    return this.#ordered;
  }
}

function isEmptyFilter(filter: NodeFilter): boolean {
  return (
    (filter.statuses === undefined || filter.statuses.length === 0) &&
    (filter.metadata === undefined || Object.keys(filter.metadata).length === 0) &&
    (filter.services === undefined || filter.services.length === 0) &&
    (filter.labels === undefined || Object.keys(filter.labels).length === 0) &&
    (filter.nameContains === undefined || filter.nameContains === "")
  );
}

export function byNameThenId(a: NodeRecord, b: NodeRecord): number {
  return compareText(a.name, b.name) || compareText(a.id, b.id);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Readers share the view's records: freezing them turns an accidental edit into an error, not a corrupt view. */
function freeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    for (const inner of Object.values(value)) freeze(inner);
    Object.freeze(value);
  }
  return value;
}
