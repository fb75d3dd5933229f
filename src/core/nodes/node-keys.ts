/**
 * Where nodes live in the store. Ids and names are URI-encoded so that any of them makes one flat key.
 * `/node-names/<name>` holds the id of the one node not yet left that has the name: writing it in the same
 * txn as the node (with a "must not exist" compare) is what keeps names unique under concurrent writers.
 */
export const nodeKeyPrefix = "/nodes/";
export const nodeNameKeyPrefix = "/node-names/";

export function nodeKey(id: string): string {
  return nodeKeyPrefix + encodeURIComponent(id);
}

export function nodeNameKey(name: string): string {
  return nodeNameKeyPrefix + encodeURIComponent(name);
}
