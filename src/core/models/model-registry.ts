import type { Clock } from "../../base/clock.ts";
import { CorralError, ErrorCode } from "../../base/errors.ts";
import { shownValue } from "../../base/safe-text.ts";
import type { Store } from "../../store/store.ts";
import type { Compare, KeyValue, Op } from "../../store/types.ts";
import type { NodeRecord } from "../nodes/node.ts";
import { decodeStoredNode, encodeNode } from "../nodes/node-codec.ts";
import { nodeKeyPrefix } from "../nodes/node-keys.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";
import {
  type AddModelInput,
  buildModelRecord,
  decodeStoredModel,
  drainKey,
  drainKeyPrefix,
  encodeModel,
  type ModelRecord,
  modelKey,
  modelKeyPrefix,
  modelNameKey,
  nodeIdOfDrainKey,
  type PlacementState,
  unassignedMessage,
} from "./model.ts";
import {
  comparePlacements,
  type LayerRange,
  type PlacementChange,
  type PlacementNodeState,
  placeLayers,
} from "./placement.ts";

export interface ModelRegistryOptions {
  /** Compare-and-swap attempts before a write gives up with ABORTED; default 16. */
  maxAttempts?: number;
}

/** What one placement pass did. */
export interface PlacementOutcome {
  /** The revision written, or the one read when nothing had to change. */
  revision: number;
  changed: boolean;
  /** Layer by layer, over all models (a removed model's layers count as dropped). */
  change: PlacementChange;
  /** Every model after the pass, oldest first. */
  models: ModelRecord[];
  /** Every model before the pass (removed ones included), oldest first. */
  previous: ModelRecord[];
}

interface Snapshot {
  nodes: Map<string, { kv: KeyValue; node: NodeRecord }>;
  models: { kv: KeyValue; model: ModelRecord }[];
  drained: Set<string>;
}

/** A change to apply before placing: it edits the working set and may add ops of its own. */
interface Mutation {
  /** Models to delete (ids); their layers are freed in the same txn. */
  remove?: Set<string>;
  /** Model id → assigned. */
  assign?: Map<string, boolean>;
  /** Node ids to drain (true) or undrain (false). */
  drain?: Map<string, boolean>;
}

/**
 * The models of the cluster and where their layers are, kept in the store under `/models/`. Every change
 * of placement — a model assigned, removed, a node down or drained — is one pass of the pure placement
 * function over the whole cluster, written as one store txn that updates the models' assignments and the
 * nodes' `usedLayers` together, compare-and-swap on every model read: two writers never both spend the
 * same free layer.
 *
 * `usedLayers` on a node record is the layers placed on it, plus whatever use was declared for it outside
 * placement (a node registered with `usedLayers` already set): a pass keeps that declared part and sets
 * the rest, so every face that shows a node shows placement's truth. A writer that lowers it below the
 * placed layers (an agent re-reporting its resources with 0) is corrected by the next pass.
 */
export class ModelRegistry {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #nodes: NodeRegistry;
  readonly #maxAttempts: number;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #ownRevisions: number[] = [];

  constructor(store: Store, clock: Clock, nodes: NodeRegistry, options: ModelRegistryOptions = {}) {
    this.#store = store;
    this.#clock = clock;
    this.#nodes = nodes;
    this.#maxAttempts = options.maxAttempts ?? 16;
  }

  /** Registers a model, not assigned (it holds no layers until `assign`). Names are unique. */
  async add(input: AddModelInput): Promise<ModelRecord> {
    const model = buildModelRecord(input, this.#clock.now());
    const result = await this.#store.commit({
      compares: [
        { key: modelKey(model.id), modRevision: 0 },
        { key: modelNameKey(model.name), modRevision: 0 },
      ],
      ops: [
        { type: "put", key: modelKey(model.id), value: encodeModel(model) },
        { type: "put", key: modelNameKey(model.name), value: JSON.stringify({ id: model.id }) },
      ],
    });
    if (result.succeeded) return model;
    if ((await this.#store.get(modelNameKey(model.name))) !== undefined) {
      throw new CorralError(ErrorCode.AlreadyExists, `a model named "${model.name}" is already registered`, {
        details: { name: model.name },
      });
    }
    throw new CorralError(ErrorCode.AlreadyExists, `model id "${model.id}" is already registered`, {
      details: { id: model.id },
    });
  }

  /** By id first, then by name. */
  async get(idOrName: string): Promise<ModelRecord> {
    if (idOrName.trim() === "")
      throw CorralError.invalidArgument("model", "is empty; give a model id or name");
    const byId = await this.#store.get(modelKey(idOrName));
    if (byId !== undefined) return decodeStoredModel(byId.value, byId.key);
    const index = await this.#store.get(modelNameKey(idOrName));
    if (index !== undefined) {
      const id = (JSON.parse(index.value) as { id: string }).id;
      const kv = await this.#store.get(modelKey(id));
      if (kv !== undefined) return decodeStoredModel(kv.value, kv.key);
    }
    throw modelNotFound(idOrName);
  }

  /** Every model, by name. */
  async list(): Promise<{ models: ModelRecord[]; revision: number }> {
    const { items, revision } = await this.#store.list(modelKeyPrefix);
    const models = items
      .map((kv) => decodeStoredModel(kv.value, kv.key))
      .sort((a, b) => compareText(a.name, b.name) || compareText(a.id, b.id));
    return { models, revision };
  }

  /** Deletes the model; its layers are freed in the same txn (and the room goes to models waiting for it). */
  async remove(idOrName: string): Promise<ModelRecord> {
    const model = await this.get(idOrName);
    await this.#place({ remove: new Set([model.id]) });
    return model;
  }

  /** Marks the model to be placed and places it at once; the record says how far that got. */
  async assign(idOrName: string): Promise<{ model: ModelRecord; outcome: PlacementOutcome }> {
    return this.#setAssigned(idOrName, true);
  }

  /** Frees every layer of the model; it stays registered. */
  async unassign(idOrName: string): Promise<{ model: ModelRecord; outcome: PlacementOutcome }> {
    return this.#setAssigned(idOrName, false);
  }

  async #setAssigned(
    idOrName: string,
    assigned: boolean,
  ): Promise<{ model: ModelRecord; outcome: PlacementOutcome }> {
    const { id } = await this.get(idOrName);
    const outcome = await this.#place({ assign: new Map([[id, assigned]]) });
    const model = outcome.models.find((m) => m.id === id);
    if (model === undefined) throw modelNotFound(idOrName);
    return { model, outcome };
  }

  /**
   * A drained node takes no new layers and gives up the ones it holds, in the same txn that marks it.
   * The node stays a member; `undrain` lets it take layers again (nothing moves back by itself).
   */
  async drain(nodeIdOrName: string): Promise<{ node: NodeRecord; outcome: PlacementOutcome }> {
    const node = await this.#nodes.get(nodeIdOrName);
    return { node, outcome: await this.#place({ drain: new Map([[node.id, true]]) }) };
  }

  async undrain(nodeIdOrName: string): Promise<{ node: NodeRecord; outcome: PlacementOutcome }> {
    const node = await this.#nodes.get(nodeIdOrName);
    return { node, outcome: await this.#place({ drain: new Map([[node.id, false]]) }) };
  }

  async drained(): Promise<Set<string>> {
    const { items } = await this.#store.list(drainKeyPrefix);
    return new Set(items.map((kv) => nodeIdOfDrainKey(kv.key)));
  }

  /** One placement pass with nothing asked for: re-places what lost its node, fills what waits for room. */
  async reconcile(): Promise<PlacementOutcome> {
    return this.#place({});
  }

  /** True for a revision this registry wrote (a watcher of the feed can skip its own echoes). */
  wrote(revision: number): boolean {
    return this.#ownRevisions.includes(revision);
  }

  /** Runs passes one at a time in this process; the store's compare-and-swap covers other processes. */
  #place(mutation: Mutation): Promise<PlacementOutcome> {
    const run = this.#queue.then(() => this.#placeNow(mutation));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #placeNow(mutation: Mutation): Promise<PlacementOutcome> {
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const snapshot = await this.#read();
      const { txn, outcome } = this.#plan(snapshot, mutation);
      if (txn.ops.length === 0) return outcome;
      const result = await this.#store.commit(txn);
      if (result.succeeded) {
        this.#ownRevisions.push(result.revision);
        if (this.#ownRevisions.length > 64) this.#ownRevisions.shift();
        return { ...outcome, revision: result.revision, changed: true };
      }
    }
    throw new CorralError(
      ErrorCode.Aborted,
      `placement kept changing during ${this.#maxAttempts} attempts to write it; try again`,
    );
  }

  async #read(): Promise<Snapshot & { revision: number }> {
    const [nodeList, modelList, drainList] = await Promise.all([
      this.#store.list(nodeKeyPrefix),
      this.#store.list(modelKeyPrefix),
      this.#store.list(drainKeyPrefix),
    ]);
    const nodes = new Map<string, { kv: KeyValue; node: NodeRecord }>();
    for (const kv of nodeList.items) {
      const node = decodeStoredNode(kv.value, kv.key);
      nodes.set(node.id, { kv, node });
    }
    const models = modelList.items
      .map((kv) => ({ kv, model: decodeStoredModel(kv.value, kv.key) }))
      .sort((a, b) => a.model.createdAt - b.model.createdAt || compareText(a.model.id, b.model.id));
    const drained = new Set(drainList.items.map((kv) => nodeIdOfDrainKey(kv.key)));
    return {
      nodes,
      models,
      drained,
      revision: Math.max(nodeList.revision, modelList.revision, drainList.revision),
    };
  }

  #plan(
    snapshot: Snapshot & { revision: number },
    mutation: Mutation,
  ): { txn: { compares: Compare[]; ops: Op[] }; outcome: PlacementOutcome } {
    const now = this.#clock.now();
    const compares: Compare[] = snapshot.models.map(({ kv }) => ({
      key: kv.key,
      modRevision: kv.modRevision,
    }));
    const ops: Op[] = [];

    for (const id of mutation.remove ?? []) {
      if (!snapshot.models.some(({ model }) => model.id === id)) throw modelNotFound(id);
    }
    for (const id of mutation.assign?.keys() ?? []) {
      if (!snapshot.models.some(({ model }) => model.id === id)) throw modelNotFound(id);
    }
    const drained = new Set(snapshot.drained);
    for (const [nodeId, drain] of mutation.drain ?? []) {
      if (drain === drained.has(nodeId)) continue;
      if (drain) {
        drained.add(nodeId);
        ops.push({ type: "put", key: drainKey(nodeId), value: JSON.stringify({ nodeId, since: now }) });
      } else {
        drained.delete(nodeId);
        ops.push({ type: "delete", key: drainKey(nodeId) });
      }
    }
    // The mark of a node that was removed goes with it.
    for (const nodeId of drained) {
      if (snapshot.nodes.has(nodeId)) continue;
      drained.delete(nodeId);
      ops.push({ type: "delete", key: drainKey(nodeId) });
    }

    // What each node holds now, and what it was said to use beyond that.
    const placedBefore = new Map<string, number>();
    for (const { model } of snapshot.models) {
      for (const range of model.assignments)
        placedBefore.set(range.nodeId, (placedBefore.get(range.nodeId) ?? 0) + range.count);
    }
    const declared = (node: NodeRecord) =>
      Math.max(0, node.resources.usedLayers - (placedBefore.get(node.id) ?? 0));

    const kept = snapshot.models.filter(({ model }) => !mutation.remove?.has(model.id));
    for (const { model } of snapshot.models) {
      if (!mutation.remove?.has(model.id)) continue;
      ops.push(
        { type: "delete", key: modelKey(model.id) },
        { type: "delete", key: modelNameKey(model.name) },
      );
    }
    const wanted = (model: ModelRecord) => mutation.assign?.get(model.id) ?? model.assigned;
    const result = placeLayers({
      nodes: [...snapshot.nodes.values()].map(({ node }) => ({
        id: node.id,
        capacity: Math.max(0, node.resources.maxLayers - declared(node)),
        gpu: node.resources.gpus.length > 0,
        state: placementStateOf(node, drained.has(node.id)),
      })),
      models: kept.map(({ model }) => ({
        id: model.id,
        layerCount: model.layerCount,
        wanted: wanted(model),
        assignments: model.assignments,
      })),
    });

    const nameOf = (nodeId: string) => snapshot.nodes.get(nodeId)?.node.name ?? nodeId;
    const models: ModelRecord[] = kept.map(({ model }, index) => {
      const placement = result.models[index] as (typeof result.models)[number];
      const assigned = wanted(model);
      const state = stateOf(assigned, placement.placed, model.layerCount);
      const next: ModelRecord = {
        ...model,
        assigned,
        assignments: placement.assignments,
        state,
        message: messageOf(state, model.layerCount, placement.assignments, nameOf),
      };
      if (!samePlacement(model, next)) {
        next.updatedAt = now;
        ops.push({ type: "put", key: modelKey(model.id), value: encodeModel(next) });
      }
      return next;
    });

    for (const { kv, node } of snapshot.nodes.values()) {
      const usedLayers = declared(node) + (result.usage.get(node.id) ?? 0);
      if (usedLayers === node.resources.usedLayers) continue;
      compares.push({ key: kv.key, modRevision: kv.modRevision });
      ops.push({
        type: "put",
        key: kv.key,
        value: encodeNode({ ...node, resources: { ...node.resources, usedLayers }, updatedAt: now }),
      });
    }

    const change = comparePlacements(
      snapshot.models.map(({ model }) => model),
      models,
    );
    return {
      txn: { compares, ops },
      outcome: {
        revision: snapshot.revision,
        changed: false,
        change,
        models,
        previous: snapshot.models.map(({ model }) => model),
      },
    };
  }
}

function placementStateOf(node: NodeRecord, drained: boolean): PlacementNodeState {
  if (drained) return "evict";
  if (node.status === "ready") return "eligible";
  if (node.status === "suspect") return "keep";
  return "evict";
}

function stateOf(assigned: boolean, placed: number, layerCount: number): PlacementState {
  if (!assigned) return "unassigned";
  if (placed >= layerCount) return "placed";
  return placed === 0 ? "unplaced" : "partial";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function describeRanges(
  assignments: readonly LayerRange[],
  nameOf: (nodeId: string) => string,
): string {
  return assignments
    .map((range) =>
      range.count === 1
        ? `${nameOf(range.nodeId)} [${range.start}]`
        : `${nameOf(range.nodeId)} [${range.start}-${range.start + range.count - 1}]`,
    )
    .join(", ");
}

function messageOf(
  state: PlacementState,
  layerCount: number,
  assignments: readonly LayerRange[],
  nameOf: (nodeId: string) => string,
): string {
  const placed = assignments.reduce((sum, range) => sum + range.count, 0);
  const where = `${plural(assignments.length, "node")}: ${describeRanges(assignments, nameOf)}`;
  switch (state) {
    case "unassigned":
      return unassignedMessage(layerCount);
    case "placed":
      return `placed: all ${plural(layerCount, "layer")} on ${where}`;
    case "partial":
      return `partially placed: ${placed} of ${layerCount} layers on ${where}; ${plural(layerCount - placed, "layer")} wait for free capacity on ready nodes`;
    case "unplaced":
      return `not placed: none of its ${plural(layerCount, "layer")} found free capacity on a ready node`;
  }
}

function samePlacement(a: ModelRecord, b: ModelRecord): boolean {
  return (
    a.assigned === b.assigned &&
    a.state === b.state &&
    a.message === b.message &&
    a.assignments.length === b.assignments.length &&
    a.assignments.every((range, i) => {
      const other = b.assignments[i];
      return (
        other !== undefined &&
        other.nodeId === range.nodeId &&
        other.start === range.start &&
        other.count === range.count
      );
    })
  );
}

function modelNotFound(idOrName: string): CorralError {
  return new CorralError(
    ErrorCode.NotFound,
    `model "${shownValue(idOrName)}" not found (looked up by id and by name)`,
    {
      details: { model: idOrName },
    },
  );
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
