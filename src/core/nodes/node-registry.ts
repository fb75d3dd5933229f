import type { Clock } from "../../base/clock.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { shownValue } from "../../base/safe-text.ts";
import type { Store } from "../../store/store.ts";
import type { Compare, KeyValue, Op } from "../../store/types.ts";
import { asObject, asOneOf } from "../json-fields.ts";
import { type NodeRecord, type NodeStatus, nodeStatuses } from "./node.ts";
import { decodeStoredNode, encodeNode } from "./node-codec.ts";
import { matchesNodeFilter, type NodeFilter, validateNodeFilter } from "./node-filter.ts";
import { nodeKey, nodeKeyPrefix, nodeNameKey } from "./node-keys.ts";
import { applyNodePatch, buildNodeRecord, type NodePatch, type RegisterNodeInput } from "./node-record.ts";
import { isPlausibleIdOrName } from "./node-validation.ts";
import type { NodeView } from "./node-view.ts";

export type { NodePatch, RegisterNodeInput } from "./node-record.ts";

export interface NodeRegistryOptions {
  /** Compare-and-swap attempts before a write gives up with ABORTED; default 32. */
  maxAttempts?: number;
  /**
   * Nodes in memory, following the store: reads are served from it while it is ready, and writes through
   * this registry are applied to it as soon as the store acknowledges them. Without one every read goes
   * to the store.
   */
  view?: NodeView;
}

/** One node's change as the store recorded it: its record now, or none once removed. */
export interface NodeChange {
  readonly id: string;
  readonly node?: NodeRecord;
}

/** One node's new status in a `setStatuses` batch; `from`: only if the node has this status now. */
export interface StatusChange {
  readonly id: string;
  readonly status: NodeStatus;
  readonly from?: NodeStatus;
}

export interface StatusChanges {
  /** The records as written (nodes already in the status asked for are in neither list). */
  readonly written: NodeRecord[];
  /** Ids of nodes not found, left, or not in `from`. */
  readonly skipped: string[];
  /** The revision of the write, or the current one when nothing was written. */
  readonly revision: number;
}

interface Stored {
  key: string;
  modRevision: number;
  node: NodeRecord;
}

/**
 * Every node the controller knows, kept in the store under `/nodes/`. Writes are compare-and-swap on the
 * node's modRevision, so concurrent writers never lose each other's changes, and every change lands in
 * the store's event feed. A node is addressed by id, or by its name (unique among nodes that have not left).
 */
export class NodeRegistry {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #maxAttempts: number;
  readonly #view: NodeView | undefined;

  constructor(store: Store, clock: Clock, options: NodeRegistryOptions = {}) {
    this.#store = store;
    this.#clock = clock;
    this.#maxAttempts = options.maxAttempts ?? 32;
    this.#view = options.view;
  }

  /**
   * Moves whenever a node changes, while reads come from the view (undefined otherwise): lets a caller
   * share what it derives from a listing among all who ask before the next change.
   */
  get version(): number | undefined {
    return this.#ready()?.version;
  }

  /** The view reads are served from, when it is current. */
  #ready(): NodeView | undefined {
    return this.#view?.ready === true ? this.#view : undefined;
  }

  async register(input: RegisterNodeInput): Promise<NodeRecord> {
    const node = buildNodeRecord(input, this.#clock.now());
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const compares: Compare[] = [{ key: nodeKey(node.id), modRevision: 0 }];
      const value = encodeNode(node);
      const ops: Op[] = [{ type: "put", key: nodeKey(node.id), value }];
      if (holdsName(node)) {
        compares.push({ key: nodeNameKey(node.name), modRevision: 0 });
        ops.push({ type: "put", key: nodeNameKey(node.name), value: JSON.stringify({ id: node.id }) });
      }
      const result = await this.#store.commit({ compares, ops });
      if (result.succeeded) {
        this.#view?.wrote(nodeKey(node.id), value, result.revision);
        return node;
      }
      if ((await this.#store.get(nodeKey(node.id))) !== undefined)
        throw new CorralError(ErrorCode.AlreadyExists, `node id "${node.id}" is already registered`, {
          details: { id: node.id },
        });
      await this.#assertNameFree(node);
    }
    throw this.#contention(node.id);
  }

  /** By exact id first, then by name. */
  async get(idOrName: string): Promise<NodeRecord> {
    return this.#withLastSeen((await this.#resolve(idOrName)).node);
  }

  /**
   * Where the freshest last-seen times live: heartbeats are kept in memory by the liveness tracker
   * instead of becoming one store write each, and reads show them.
   */
  takeLastSeenFrom(source: (nodeId: string) => number | undefined): void {
    this.#lastSeen = source;
  }

  #lastSeen: (nodeId: string) => number | undefined = () => undefined;

  #withLastSeen(node: NodeRecord): NodeRecord {
    const seen = this.#lastSeen(node.id);
    return seen === undefined || seen <= node.lastSeenAt ? node : { ...node, lastSeenAt: seen };
  }

  async list(filter: NodeFilter = {}): Promise<{ nodes: NodeRecord[]; revision: number }> {
    const checked = validateNodeFilter(filter);
    const view = this.#ready();
    if (view !== undefined) {
      const listed = view.list(checked);
      for (let i = 0; i < listed.nodes.length; i++)
        listed.nodes[i] = this.#withLastSeen(listed.nodes[i] as NodeRecord);
      return listed;
    }
    const { items, revision } = await this.#store.list(nodeKeyPrefix);
    const nodes = items
      .map((kv) => this.#withLastSeen(decodeStoredNode(kv.value, kv.key)))
      .filter((node) => matchesNodeFilter(node, checked))
      .sort((a, b) => compareText(a.name, b.name) || compareText(a.id, b.id));
    return { nodes, revision };
  }

  /** `patch` may be a function of the current record: it is called again on every retry. */
  async update(
    idOrName: string,
    patch: NodePatch | ((current: NodeRecord) => NodePatch),
  ): Promise<NodeRecord> {
    return this.#mutate(idOrName, (current, now) =>
      applyNodePatch(current, typeof patch === "function" ? patch(current) : patch, now),
    );
  }

  async setStatus(idOrName: string, status: NodeStatus): Promise<NodeRecord> {
    const checked = asOneOf(status, nodeStatuses, "status");
    return this.#mutate(idOrName, (current, now) => ({ ...current, status: checked, updatedAt: now }));
  }

  /**
   * Several status changes in one store txn, so that a mass transition (a rack losing power) costs one
   * write and one batch of events per call, not one per node. Nodes are addressed by id. A change whose
   * node is gone, has left, or (with `from`) no longer has the status `from` is skipped, not an error:
   * the caller acted on a view that moved on. At most the store's txn limit (128) changes per call: the
   * store refuses more with INVALID_ARGUMENT.
   */
  async setStatuses(changes: readonly StatusChange[]): Promise<StatusChanges> {
    for (const change of changes) {
      // Leaving and coming back change who holds the name: that is setStatus's job, one node at a time.
      if (asOneOf(change.status, nodeStatuses, "status") === "left")
        throw CorralError.invalidArgument("status", 'cannot be "left" in a batch; use setStatus');
    }
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const now = this.#clock.now();
      const written: NodeRecord[] = [];
      const skipped: string[] = [];
      const compares: Compare[] = [];
      const ops: Op[] = [];
      for (const change of changes) {
        // From the view on the first attempt (no read, no decode per node in a storm); the store's after.
        const found = await this.#current(change.id, attempt).catch((error: unknown) => {
          if (error instanceof CorralError && error.code === ErrorCode.NotFound) return undefined;
          throw error;
        });
        const current = found?.node;
        if (
          found === undefined ||
          current === undefined ||
          current.status === "left" ||
          (change.from !== undefined && current.status !== change.from)
        ) {
          skipped.push(change.id);
          continue;
        }
        if (current.status === change.status) continue;
        const next: NodeRecord = { ...current, status: change.status, updatedAt: now };
        compares.push({ key: found.key, modRevision: found.modRevision });
        ops.push({ type: "put", key: found.key, value: encodeNode(next) });
        written.push(next);
      }
      if (ops.length === 0) return { written, skipped, revision: await this.#store.revision() };
      const result = await this.#store.commit({ compares, ops });
      if (result.succeeded) {
        // Read-your-writes: the view has them before the watch echoes them.
        for (const op of ops) if (op.type === "put") this.#view?.wrote(op.key, op.value, result.revision);
        return { written, skipped, revision: result.revision };
      }
    }
    throw new CorralError(
      ErrorCode.Aborted,
      `${changes.length} nodes kept changing during ${this.#maxAttempts} attempts to write their statuses; try again`,
    );
  }

  /**
   * Marks the node seen now. Each call is a store write: the membership layer should coalesce heartbeats
   * rather than call this for every one.
   */
  async touch(idOrName: string): Promise<NodeRecord> {
    return this.#mutate(idOrName, (current, now) => ({ ...current, lastSeenAt: now }));
  }

  /** Deletes the node (and frees its name); returns it as it was. */
  async remove(idOrName: string): Promise<NodeRecord> {
    const id = (await this.#resolve(idOrName)).node.id;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const { key, modRevision, node } = await this.#current(id, attempt);
      const ops: Op[] = [{ type: "delete", key }];
      if (holdsName(node)) ops.push({ type: "delete", key: nodeNameKey(node.name) });
      const result = await this.#store.commit({ compares: [{ key, modRevision }], ops });
      if (result.succeeded) {
        this.#view?.wrote(key, undefined, result.revision);
        return node;
      }
    }
    throw this.#contention(id);
  }

  /**
   * Every node exactly as stored (last-seen as written, not as heard in memory), with the store's
   * revision: every controller answers the same for the same revision.
   */
  async stored(): Promise<{ nodes: NodeRecord[]; revision: number }> {
    const { items, revision } = await this.#store.list(nodeKeyPrefix);
    return { nodes: items.map((kv) => decodeStoredNode(kv.value, kv.key)), revision };
  }

  /**
   * The latest stored state of each node changed after revision `since` (removed ones without a
   * record), with the store's revision now; undefined when that history was compacted away.
   * INVALID_ARGUMENT when `since` is ahead of the store.
   */
  async changedSince(since: number): Promise<{ changes: NodeChange[]; revision: number } | undefined> {
    const revision = await this.#store.revision();
    if (since > revision) {
      throw CorralError.invalidArgument(
        "since_revision",
        `${since} is ahead of the cluster's revision ${revision}`,
      );
    }
    const events = await this.#store.changes(since + 1, { prefix: nodeKeyPrefix }).catch((error: unknown) => {
      if (error instanceof CorralError && error.code === ErrorCode.OutOfRange) return undefined;
      throw error;
    });
    if (events === undefined) return undefined;
    const latest = new Map<string, NodeChange>();
    for (const event of events) {
      const id = event.key.slice(nodeKeyPrefix.length);
      latest.set(
        id,
        event.type === "delete" || event.value === undefined
          ? { id }
          : { id, node: decodeStoredNode(event.value, event.key) },
      );
    }
    return { changes: [...latest.values()], revision };
  }

  async #mutate(
    idOrName: string,
    change: (current: NodeRecord, now: number) => NodeRecord,
  ): Promise<NodeRecord> {
    const id = (await this.#resolve(idOrName)).node.id;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const { key, modRevision, node: current } = await this.#current(id, attempt);
      const next = change(current, this.#clock.now());
      const value = encodeNode(next);
      const compares: Compare[] = [{ key, modRevision }];
      const ops: Op[] = [{ type: "put", key, value }];
      const nameChanges = current.name !== next.name || holdsName(current) !== holdsName(next);
      if (nameChanges && holdsName(current)) ops.push({ type: "delete", key: nodeNameKey(current.name) });
      if (nameChanges && holdsName(next)) {
        compares.push({ key: nodeNameKey(next.name), modRevision: 0 });
        ops.push({ type: "put", key: nodeNameKey(next.name), value: JSON.stringify({ id: next.id }) });
      }
      const result = await this.#store.commit({ compares, ops });
      if (result.succeeded) {
        this.#view?.wrote(key, value, result.revision);
        return next;
      }
      if (nameChanges && holdsName(next)) await this.#assertNameFree(next);
    }
    throw this.#contention(id);
  }

  async #resolve(idOrName: string): Promise<Stored> {
    if (typeof idOrName !== "string" || idOrName === "")
      throw CorralError.invalidArgument("node", "is empty; give a node id or name");
    if (!isPlausibleIdOrName(idOrName)) throw notFound(idOrName);
    const view = this.#ready();
    if (view !== undefined) return resolveInView(view, idOrName);
    const byId = await this.#store.get(nodeKey(idOrName));
    if (byId !== undefined) return stored(byId);
    const index = await this.#store.get(nodeNameKey(idOrName));
    if (index !== undefined) {
      const kv = await this.#store.get(nodeKey(indexedId(index)));
      if (kv !== undefined) return stored(kv);
    }
    return this.#resolveLeftByName(idOrName);
  }

  /**
   * The record a write starts from: the view's on the first attempt (it holds this controller's own
   * acknowledged writes), the store's on retries, since a failed compare means the view is behind.
   */
  async #current(id: string, attempt: number): Promise<Stored> {
    const viewed = attempt === 1 ? this.#ready()?.byId(id) : undefined;
    return viewed ?? this.#byId(id);
  }

  /**
   * Retries re-read by id only: a concurrent rename must not make them miss the node, and a node removed
   * meanwhile must not be mistaken for another whose name happens to equal its id.
   */
  async #byId(id: string): Promise<Stored> {
    const kv = await this.#store.get(nodeKey(id));
    if (kv === undefined) throw notFound(id);
    return stored(kv);
  }

  /** Nodes that left give up the name index, but can still be found by name while it is unambiguous. */
  async #resolveLeftByName(name: string): Promise<Stored> {
    const { items } = await this.#store.list(nodeKeyPrefix);
    return onlyLeft(
      name,
      items.map(stored).filter(({ node }) => node.name === name),
    );
  }

  async #assertNameFree(node: NodeRecord): Promise<void> {
    const index = await this.#store.get(nodeNameKey(node.name));
    if (index !== undefined && indexedId(index) !== node.id)
      throw new CorralError(
        ErrorCode.AlreadyExists,
        `node name "${node.name}" is already used by node ${indexedId(index)}`,
        { details: { name: node.name } },
      );
  }

  #contention(id: string): CorralError {
    return new CorralError(
      ErrorCode.Aborted,
      `node "${id}" kept changing during ${this.#maxAttempts} attempts to write it; try again`,
      { details: { id } },
    );
  }
}

function stored(kv: KeyValue): Stored {
  return { key: kv.key, modRevision: kv.modRevision, node: decodeStoredNode(kv.value, kv.key) };
}

/** The same lookup as the store's: id, then the name a node holds, then a unique name among those that left. */
function resolveInView(view: NodeView, idOrName: string): Stored {
  const byId = view.byId(idOrName);
  if (byId !== undefined) return byId;
  const named = view.byName(idOrName);
  const [first] = named;
  if (first !== undefined && holdsName(first.node)) return first;
  return onlyLeft(idOrName, named);
}

function onlyLeft(name: string, matches: readonly Stored[]): Stored {
  const [only, second] = matches;
  if (only === undefined) throw notFound(name);
  if (second !== undefined)
    throw new CorralError(
      ErrorCode.FailedPrecondition,
      `node name "${name}" is shared by ${matches.length} nodes that left; address one by id`,
      { details: { name } },
    );
  return only;
}

/** Only a node that has not left holds its name in the index. */
function holdsName(node: NodeRecord): boolean {
  return node.status !== "left";
}

function indexedId(index: KeyValue): string {
  let id: unknown;
  try {
    id = asObject(JSON.parse(index.value), "index").id;
  } catch {
    id = undefined;
  }
  if (typeof id !== "string")
    throw new CorralError(ErrorCode.Internal, `name index at ${index.key} is malformed: ${index.value}`);
  return id;
}

function notFound(idOrName: string): CorralError {
  return new CorralError(
    ErrorCode.NotFound,
    `node "${shownValue(idOrName)}" not found (looked up by id and by name)`,
    {
      details: { node: idOrName },
    },
  );
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
