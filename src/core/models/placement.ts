/**
 * Model-layer placement: a pure function from (nodes, models, where layers are now) to where they should
 * be. No I/O, no clock, no randomness: the same input gives the same output, so the controller, tests and
 * the benchmark all run exactly this.
 *
 * The rules, in the order they win:
 * 1. Never over-commit: a node holds at most its `capacity` layers, over all models together.
 * 2. Minimal movement: a layer stays on the node that holds it as long as that node may keep it
 *    (state `eligible` or `keep`) and has the capacity; only layers that lost their node, or that were
 *    never placed, are placed again. Models earlier in the input keep theirs first when a node shrank.
 * 3. Contiguous ranges: each node holds at most one contiguous range of a model's layers.
 * 4. GPU nodes first: a gap is filled from GPU nodes while any has free capacity, then from CPU nodes.
 * 5. Fewest nodes: within a class, a node that can take the whole remaining gap is chosen (the smallest
 *    such, so big nodes stay free for big gaps; a node already holding the adjacent range first, since
 *    extending it adds no node); otherwise the node with the most free capacity takes all it can.
 * 6. Models are filled in input order (the caller passes them oldest first); ties between nodes break by
 *    node id.
 *
 * A model that cannot be placed whole keeps what it has and is reported with the number missing.
 */

/**
 * - `eligible`: may keep its layers and take new ones (a ready node that is not drained);
 * - `keep`: keeps what it holds but takes nothing new (suspect: it may be back in a moment);
 * - `evict`: loses every layer (down, left, pending, drained, or unknown).
 */
export type PlacementNodeState = "eligible" | "keep" | "evict";

export interface PlacementNode {
  readonly id: string;
  /** Layers this node may hold for placed models, all models together. */
  readonly capacity: number;
  readonly gpu: boolean;
  readonly state: PlacementNodeState;
}

/** Layers `start` … `start + count - 1` of a model, on one node. */
export interface LayerRange {
  readonly nodeId: string;
  readonly start: number;
  readonly count: number;
}

export interface PlacementModel {
  readonly id: string;
  readonly layerCount: number;
  /** False for a model that is registered but not assigned: it holds nothing. */
  readonly wanted: boolean;
  /** Where its layers are now. */
  readonly assignments: readonly LayerRange[];
}

export interface ModelPlacement {
  readonly id: string;
  /** Sorted by `start`; at most one range per node. */
  readonly assignments: LayerRange[];
  readonly placed: number;
  /** Layers that found no node (0 for a model placed whole, or not wanted). */
  readonly missing: number;
  /**
   * True when the model was placed afresh, moving layers that could have stayed: done only when keeping
   * them would have left layers unplaced that the free capacity could hold (rule 3 blocked the gaps).
   */
  readonly replaced: boolean;
}

export interface PlacementResult {
  /** One per input model, in input order. */
  readonly models: ModelPlacement[];
  /** Layers placed on each node after placement (nodes holding none are absent). */
  readonly usage: Map<string, number>;
}

export interface PlacementInput {
  readonly nodes: readonly PlacementNode[];
  readonly models: readonly PlacementModel[];
}

interface Range {
  start: number;
  count: number;
}

/** Nodes with free capacity in one class, sorted by (free ascending, id ascending). */
class FreePool {
  readonly #items: { id: string; free: number }[] = [];

  constructor(entries: Iterable<{ id: string; free: number }>) {
    for (const entry of entries) if (entry.free > 0) this.#items.push({ ...entry });
    this.#items.sort(compareFree);
  }

  get size(): number {
    return this.#items.length;
  }

  /** The node with the least free capacity that is at least `need`, skipping `exclude`. */
  bestFit(need: number, exclude: ReadonlySet<string>): { id: string; free: number } | undefined {
    for (let i = this.#lowerBound(need, ""); i < this.#items.length; i++) {
      const item = this.#items[i] as { id: string; free: number };
      if (!exclude.has(item.id)) return item;
    }
    return undefined;
  }

  /** The node with the most free capacity, skipping `exclude`. */
  largest(exclude: ReadonlySet<string>): { id: string; free: number } | undefined {
    for (let i = this.#items.length - 1; i >= 0; i--) {
      const item = this.#items[i] as { id: string; free: number };
      if (!exclude.has(item.id)) return item;
    }
    return undefined;
  }

  /** Moves a node to its new free capacity (out of the pool at 0, back in above it). */
  update(id: string, oldFree: number, newFree: number): void {
    const at = this.#lowerBound(oldFree, id);
    const item = this.#items[at];
    if (item !== undefined && item.id === id && item.free === oldFree) this.#items.splice(at, 1);
    if (newFree > 0) this.#items.splice(this.#lowerBound(newFree, id), 0, { id, free: newFree });
  }

  #lowerBound(free: number, id: string): number {
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const item = this.#items[mid] as { id: string; free: number };
      if (item.free < free || (item.free === free && item.id < id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function compareFree(a: { id: string; free: number }, b: { id: string; free: number }): number {
  return a.free - b.free || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** Where layers should be; see the module comment for the rules. */
export function placeLayers(input: PlacementInput): PlacementResult {
  const nodes = new Map<string, PlacementNode>();
  for (const node of input.nodes) nodes.set(node.id, node);
  const free = new Map<string, number>();
  for (const node of input.nodes) {
    if (node.state !== "evict") free.set(node.id, Math.max(0, Math.floor(node.capacity)));
  }

  // Phase 1: every model keeps what it may keep, oldest model first.
  const kept: Map<string, Range>[] = input.models.map((model) => {
    const ranges = new Map<string, Range>();
    if (!model.wanted) return ranges;
    const layerCount = Math.max(0, Math.floor(model.layerCount));
    const sorted = [...model.assignments].sort((a, b) => a.start - b.start);
    let coveredUntil = 0;
    for (const range of sorted) {
      const left = free.get(range.nodeId);
      if (left === undefined || ranges.has(range.nodeId)) continue;
      const start = Math.max(range.start, coveredUntil, 0);
      const end = Math.min(range.start + range.count, layerCount);
      const count = Math.min(end - start, left);
      if (count <= 0) continue;
      ranges.set(range.nodeId, { start, count });
      free.set(range.nodeId, left - count);
      coveredUntil = start + count;
    }
    return ranges;
  });

  // Phase 2: fill the gaps, oldest model first. The pools are built only when there is a gap.
  let pools: { gpu: FreePool; cpu: FreePool } | undefined;
  const poolsFor = () => {
    pools ??= {
      gpu: new FreePool(eligibleFree(nodes, free, true)),
      cpu: new FreePool(eligibleFree(nodes, free, false)),
    };
    return pools;
  };
  /** Spends `count` layers of a node's room (a negative count gives room back). */
  const take = (nodeId: string, count: number) => {
    const pool = poolsFor();
    const before = free.get(nodeId) ?? 0;
    free.set(nodeId, before - count);
    const node = nodes.get(nodeId);
    if (node?.state === "eligible") (node.gpu ? pool.gpu : pool.cpu).update(nodeId, before, before - count);
  };

  const models: ModelPlacement[] = input.models.map((model, index) => {
    const ranges = kept[index] as Map<string, Range>;
    const layerCount = model.wanted ? Math.max(0, Math.floor(model.layerCount)) : 0;
    for (const gap of gapsOf(ranges, layerCount)) fillGap(gap, ranges, nodes, free, poolsFor, take);
    let replaced = false;
    if (covered(ranges) < layerCount && fitsWhole(ranges, layerCount, nodes, free)) {
      // The gaps could not be filled only because the nodes with room already hold another part of the
      // model: placing the model afresh moves more of it, but places all of it.
      for (const [nodeId, range] of ranges) take(nodeId, -range.count);
      ranges.clear();
      fillGap({ start: 0, count: layerCount }, ranges, nodes, free, poolsFor, take);
      replaced = true;
    }
    const assignments = [...ranges]
      .map(([nodeId, range]) => ({ nodeId, start: range.start, count: range.count }))
      .sort((a, b) => a.start - b.start);
    const placed = assignments.reduce((sum, range) => sum + range.count, 0);
    return { id: model.id, assignments, placed, missing: layerCount - placed, replaced };
  });

  const usage = new Map<string, number>();
  for (const model of models) {
    for (const range of model.assignments)
      usage.set(range.nodeId, (usage.get(range.nodeId) ?? 0) + range.count);
  }
  return { models, usage };
}

function covered(ranges: ReadonlyMap<string, Range>): number {
  let sum = 0;
  for (const range of ranges.values()) sum += range.count;
  return sum;
}

/** Whether the model fits on eligible nodes if it gave back what it holds on them. */
function fitsWhole(
  ranges: ReadonlyMap<string, Range>,
  layerCount: number,
  nodes: ReadonlyMap<string, PlacementNode>,
  free: ReadonlyMap<string, number>,
): boolean {
  let room = 0;
  for (const node of nodes.values()) {
    if (node.state !== "eligible") continue;
    room += (free.get(node.id) ?? 0) + (ranges.get(node.id)?.count ?? 0);
    if (room >= layerCount) return true;
  }
  return false;
}

function* eligibleFree(
  nodes: ReadonlyMap<string, PlacementNode>,
  free: ReadonlyMap<string, number>,
  gpu: boolean,
): Iterable<{ id: string; free: number }> {
  for (const node of nodes.values()) {
    if (node.state === "eligible" && node.gpu === gpu) yield { id: node.id, free: free.get(node.id) ?? 0 };
  }
}

/** The half-open intervals of [0, layerCount) that no range covers, in order. */
function gapsOf(ranges: ReadonlyMap<string, Range>, layerCount: number): Range[] {
  const sorted = [...ranges.values()].sort((a, b) => a.start - b.start);
  const gaps: Range[] = [];
  let at = 0;
  for (const range of sorted) {
    if (range.start > at) gaps.push({ start: at, count: range.start - at });
    at = Math.max(at, range.start + range.count);
  }
  if (at < layerCount) gaps.push({ start: at, count: layerCount - at });
  return gaps;
}

function fillGap(
  gap: Range,
  ranges: Map<string, Range>,
  nodes: ReadonlyMap<string, PlacementNode>,
  free: ReadonlyMap<string, number>,
  poolsFor: () => { gpu: FreePool; cpu: FreePool },
  take: (nodeId: string, count: number) => void,
): void {
  let start = gap.start;
  let end = gap.start + gap.count;
  const holders = new Set(ranges.keys());
  const freeOf = (id: string) => free.get(id) ?? 0;
  /** The node holding the range that ends at `start` (left) or begins at `end` (right), if it may grow. */
  const neighbour = (side: "left" | "right", gpu: boolean): string | undefined => {
    for (const [id, range] of ranges) {
      const touches = side === "left" ? range.start + range.count === start : range.start === end;
      if (!touches) continue;
      const node = nodes.get(id);
      return node?.state === "eligible" && node.gpu === gpu && freeOf(id) > 0 ? id : undefined;
    }
    return undefined;
  };
  const extend = (id: string, side: "left" | "right", count: number) => {
    const range = ranges.get(id) as Range;
    if (side === "left") {
      range.count += count;
      start += count;
    } else {
      range.start -= count;
      range.count += count;
      end -= count;
    }
    take(id, count);
  };
  const claim = (id: string, count: number) => {
    ranges.set(id, { start, count });
    holders.add(id);
    start += count;
    take(id, count);
  };

  for (const gpu of [true, false]) {
    while (end > start) {
      const need = end - start;
      const pool = gpu ? poolsFor().gpu : poolsFor().cpu;
      const left = neighbour("left", gpu);
      const right = neighbour("right", gpu);
      // A whole fit: a neighbour first (no new node), then the smallest node that fits.
      const fittingNeighbour = [left, right].find((id) => id !== undefined && freeOf(id) >= need);
      if (fittingNeighbour !== undefined) {
        extend(fittingNeighbour, fittingNeighbour === left ? "left" : "right", need);
        break;
      }
      const fit = pool.bestFit(need, holders);
      if (fit !== undefined) {
        claim(fit.id, need);
        break;
      }
      // No single node takes it all: the one with the most room takes what it can.
      const big = pool.largest(holders);
      const bigNeighbour = [left, right]
        .filter((id): id is string => id !== undefined)
        .sort((a, b) => freeOf(b) - freeOf(a))[0];
      if (big === undefined && bigNeighbour === undefined) break;
      if (bigNeighbour !== undefined && (big === undefined || freeOf(bigNeighbour) >= big.free)) {
        extend(bigNeighbour, bigNeighbour === left ? "left" : "right", freeOf(bigNeighbour));
      } else if (big !== undefined) {
        claim(big.id, big.free);
      }
    }
    if (end <= start) return;
  }
}

/** How two placements of the same models differ, layer by layer. */
export interface PlacementChange {
  /** Layers on the same node before and after. */
  readonly stayed: number;
  /** Layers that were on one node and are now on another. */
  readonly moved: number;
  /** Layers that had no node and now have one. */
  readonly added: number;
  /** Layers that had a node and now have none. */
  readonly dropped: number;
}

export function comparePlacements(
  before: readonly { id: string; assignments: readonly LayerRange[] }[],
  after: readonly { id: string; assignments: readonly LayerRange[] }[],
): PlacementChange {
  const change = { stayed: 0, moved: 0, added: 0, dropped: 0 };
  const previous = new Map(before.map((model) => [model.id, model.assignments]));
  const seen = new Set<string>();
  for (const model of after) {
    seen.add(model.id);
    const was = layerOwners(previous.get(model.id) ?? []);
    const now = layerOwners(model.assignments);
    for (const [layer, owner] of now) {
      const old = was.get(layer);
      if (old === undefined) change.added++;
      else if (old === owner) change.stayed++;
      else change.moved++;
    }
    for (const layer of was.keys()) if (!now.has(layer)) change.dropped++;
  }
  for (const model of before) {
    if (!seen.has(model.id)) change.dropped += layerOwners(model.assignments).size;
  }
  return change;
}

function layerOwners(assignments: readonly LayerRange[]): Map<number, string> {
  const owners = new Map<number, string>();
  for (const range of assignments) {
    for (let layer = range.start; layer < range.start + range.count; layer++) owners.set(layer, range.nodeId);
  }
  return owners;
}
