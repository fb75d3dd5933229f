import { randomUUID } from "node:crypto";
import type { NodeRegistry } from "../core/node-registry.ts";
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

/**
 * The controller is a node of its own cluster (NanoPing lists "My Controller" among the nodes). Its id
 * is kept across restarts; its name comes from the config file, never from the API.
 */
export async function ensureControllerNode(
  store: Store,
  registry: NodeRegistry,
  init: { name: string; address: string; port: number; version: string },
): Promise<string> {
  const stored = await store.get(controllerNodeKey);
  const services = ["HUB_SERVER", "RESOURCES", "PIPELINES"] as const;
  if (stored !== undefined) {
    const { id } = JSON.parse(stored.value) as { id: string };
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
    ops: [{ type: "put", key: controllerNodeKey, value: JSON.stringify({ id: node.id }) }],
  });
  return node.id;
}
