import { randomUUID } from "node:crypto";
import type { NodeRegistry } from "../core/nodes/node-registry.ts";
import type { Store } from "../store/store.ts";

const clusterIdKey = "/cluster/id";
const controllerNodeKey = "/cluster/controller-node";

/** The cluster id is made once and kept in the store, so it is the same across restarts. */
export async function ensureClusterId(store: Store): Promise<string> {
  const existing = await store.get(clusterIdKey);
  if (existing !== undefined) return (JSON.parse(existing.value) as { id: string }).id;
  const id = randomUUID();
  const result = await store.commit({
    compares: [{ key: clusterIdKey, modRevision: 0 }],
    ops: [{ type: "put", key: clusterIdKey, value: JSON.stringify({ id }) }],
  });
  if (result.succeeded) return id;
  return ensureClusterId(store);
}

/** Where a controller keeps its node id: one key per controller name when several share a store. */
export function controllerNodeKeyOf(name: string | undefined): string {
  return name === undefined ? controllerNodeKey : `${controllerNodeKey}s/${encodeURIComponent(name)}`;
}

/**
 * The controller is a node of its own cluster (NanoPing lists "My Controller" among the nodes). Its id
 * is kept across restarts; its name comes from the config file, never from the API. With several
 * controllers on one store (etcd), `key` keeps each one's node apart.
 */
export async function ensureControllerNode(
  store: Store,
  registry: NodeRegistry,
  init: { name: string; address: string; port: number; version: string },
  key = controllerNodeKey,
): Promise<string> {
  const stored = await store.get(key);
  // Only what the controller's node serves: NanoPing's RESOURCES API was never decoded, so not offered.
  const services = ["HUB_SERVER", "LOGGING", "PIPELINES"] as const;
  // A controller node of this name kept under another key (an older layout) is this controller's.
  const adopted =
    stored === undefined
      ? await registry.get(init.name).then(
          (node) => (node.role === "controller" ? node.id : undefined),
          () => undefined,
        )
      : undefined;
  if (stored !== undefined || adopted !== undefined) {
    const id = adopted ?? (JSON.parse(stored?.value ?? "{}") as { id: string }).id;
    if (adopted !== undefined)
      await store.commit({ ops: [{ type: "put", key, value: JSON.stringify({ id: adopted }) }] });
    await registry.update(id, {
      name: init.name,
      address: init.address,
      port: init.port,
      version: init.version,
      services: [...services],
    });
    await registry.setStatus(id, "ready");
    return id;
  }
  const node = await registry.register({
    name: init.name,
    role: "controller",
    address: init.address,
    port: init.port,
    services: [...services],
    status: "ready",
    version: init.version,
  });
  await store.commit({
    ops: [{ type: "put", key, value: JSON.stringify({ id: node.id }) }],
  });
  return node.id;
}
