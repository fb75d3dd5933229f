import type { MetadataValue, NodeRecord } from "./node.ts";
import { matchesNodeFilter, type NodeFilter } from "./node-filter.ts";

/**
 * Sets of node keys by the fields the APIs filter on (status, service, metadata key and value), so a
 * filtered read visits only the nodes that can match instead of the whole fleet. An index only narrows:
 * every candidate is still checked with `matchesNodeFilter`, so the answer is exactly a plain scan's.
 */
export class NodeIndex {
  readonly #byStatus = new Map<string, Set<string>>();
  readonly #byService = new Map<string, Set<string>>();
  /** Metadata key, then the value's bucket (see `metadataBucket`). */
  readonly #byMetadata = new Map<string, Map<string, Set<string>>>();

  add(key: string, node: NodeRecord): void {
    addTo(this.#byStatus, node.status, key);
    for (const service of node.services) addTo(this.#byService, service, key);
    for (const [name, value] of Object.entries(node.metadata)) {
      let buckets = this.#byMetadata.get(name);
      if (buckets === undefined) {
        buckets = new Map();
        this.#byMetadata.set(name, buckets);
      }
      addTo(buckets, metadataBucket(value), key);
    }
  }

  remove(key: string, node: NodeRecord): void {
    removeFrom(this.#byStatus, node.status, key);
    for (const service of node.services) removeFrom(this.#byService, service, key);
    for (const [name, value] of Object.entries(node.metadata)) {
      const buckets = this.#byMetadata.get(name);
      if (buckets === undefined) continue;
      removeFrom(buckets, metadataBucket(value), key);
      if (buckets.size === 0) this.#byMetadata.delete(name);
    }
  }

  clear(): void {
    this.#byStatus.clear();
    this.#byService.clear();
    this.#byMetadata.clear();
  }

  /**
   * The keys that may match `filter`, or `undefined` when no indexed part narrows it (scan everything).
   * Statuses are a union; services and metadata an intersection, of which the smallest set is returned.
   */
  candidates(filter: NodeFilter): ReadonlySet<string> | readonly string[] | undefined {
    let best: ReadonlySet<string> | undefined;
    const consider = (ids: ReadonlySet<string>): void => {
      if (best === undefined || ids.size < best.size) best = ids;
    };
    for (const service of filter.services ?? []) consider(this.#byService.get(service) ?? empty);
    for (const [key, value] of Object.entries(filter.metadata ?? {}))
      consider(this.#byMetadata.get(key)?.get(metadataBucket(value)) ?? empty);
    if (filter.statuses === undefined || filter.statuses.length === 0) return best;
    // The statuses' union is gathered only when it is the narrowest part: NanoPing asks for every status
    // but `left`, which is nearly the whole fleet.
    const statuses = [...new Set(filter.statuses)].map((status) => this.#byStatus.get(status) ?? empty);
    const union = statuses.reduce((total, ids) => total + ids.size, 0);
    if (best !== undefined && best.size <= union) return best;
    const keys: string[] = [];
    for (const ids of statuses) for (const key of ids) keys.push(key);
    return keys;
  }
}

const empty: ReadonlySet<string> = new Set();

/**
 * Exact for the kinds compared by identity; bytes and floating kinds (bytewise, float32, NaN and -0 rules)
 * share one bucket per kind and are settled by `matchesNodeFilter`.
 */
function metadataBucket(value: MetadataValue): string {
  switch (value.kind) {
    case "string":
    case "int":
    case "uint":
    case "bool":
      return `${value.kind}:${String(value.value)}`;
    default:
      return value.kind;
  }
}

/** The nodes of `all` (or of `candidates` when given) that match, in no particular order. */
export function pickMatching(
  candidates: Iterable<string> | undefined,
  all: Iterable<NodeRecord>,
  byKey: (key: string) => NodeRecord | undefined,
  filter: NodeFilter,
): NodeRecord[] {
  const out: NodeRecord[] = [];
  if (candidates === undefined) {
    for (const node of all) if (matchesNodeFilter(node, filter)) out.push(node);
    return out;
  }
  for (const key of candidates) {
    const node = byKey(key);
    if (node !== undefined && matchesNodeFilter(node, filter)) out.push(node);
  }
  return out;
}

function addTo(map: Map<string, Set<string>>, key: string, id: string): void {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  set.add(id);
}

function removeFrom(map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(id);
  if (set.size === 0) map.delete(key);
}
