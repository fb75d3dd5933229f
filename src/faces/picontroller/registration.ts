import { create } from "@bufbuild/protobuf";
import type { MetadataValue, NodeRecord, Resources } from "../../core/nodes/node.ts";
import { maxLayersFor } from "../../core/nodes/node-capacity.ts";
import { validateShortText } from "../../core/nodes/node-validation.ts";
import { type NodeResources, NodeResourcesSchema } from "../../gen/picontroller_pb.ts";

const mib = 1_048_576;

/**
 * A registration's resources as corral keeps them. Nothing is invented: GPUs come as names only, so their
 * memory and uuid stay unknown (0, ""); the disk is the node's one disk, kept at "/"; architecture and os
 * have no place in a node's resources and are kept as string metadata items of the same names.
 */
export function registeredResources(resources: NodeResources | undefined): {
  resources: Partial<Resources>;
  metadata: Record<string, MetadataValue>;
} {
  const memoryMb = Math.floor(Number(resources?.memoryBytes ?? 0n) / mib);
  const gpus = (resources?.gpus ?? []).map((name, i) => ({
    name: validateShortText(name, `resources.gpus[${i}]`),
    memoryMb: 0,
    uuid: "",
  }));
  const diskBytes = Number(resources?.diskBytes ?? 0n);
  const metadata: Record<string, MetadataValue> = {};
  for (const [key, value] of [
    ["architecture", resources?.architecture ?? ""],
    ["os", resources?.os ?? ""],
  ] as const) {
    const text = validateShortText(value, `resources.${key}`);
    if (text !== "") metadata[key] = { kind: "string", value: text };
  }
  return {
    resources: {
      cpuCores: resources?.cpuCores ?? 0,
      memoryMb,
      gpus,
      // corral's one rule (system-resources.ts); GPUs of unknown memory hold no layers by it, so
      // without any GPU memory figure the layers are counted from system memory.
      maxLayers: maxLayersFor(
        memoryMb,
        gpus.filter((gpu) => gpu.memoryMb > 0),
      ),
      disks: diskBytes > 0 ? [{ mount: "/", sizeBytes: diskBytes }] : [],
    },
    metadata,
  };
}

/** A node's resources in RegisterNode's own shape, for SyncClusterState. */
export function nodeResources(node: NodeRecord): NodeResources {
  const text = (key: string) => {
    const item = node.metadata[key];
    return item?.kind === "string" ? item.value : "";
  };
  return create(NodeResourcesSchema, {
    cpuCores: node.resources.cpuCores,
    memoryBytes: BigInt(node.resources.memoryMb) * BigInt(mib),
    diskBytes: BigInt(node.resources.disks.reduce((sum, disk) => sum + disk.sizeBytes, 0)),
    gpus: node.resources.gpus.map((gpu) => gpu.name),
    architecture: text("architecture"),
    os: text("os"),
  });
}
