/**
 * Target (c): corral's real `corral.v1.NodesService/GetNode` on the real controller (its own process,
 * SQLite store in a temp dir) with 1 000 nodes registered, called on its plaintext loopback bridge.
 */
import { type BenchTarget, startChild } from "./child.ts";

export interface CorralTarget extends BenchTarget {
  /** Shown next to (c) in the output. */
  readonly label: string;
  /** Ids of registered nodes; the client asks GetNode for them in turn. */
  readonly nodeIds: readonly string[];
}

export async function startCorralTarget(nodes = 1_000): Promise<CorralTarget> {
  const { target, ready } = await startChild(new URL("./servers/controller-target.ts", import.meta.url), [
    String(nodes),
  ]);
  const nodeIds = ready.nodeIds;
  if (!Array.isArray(nodeIds) || nodeIds.length !== nodes) {
    await target.close();
    throw new Error("the corral target did not report its node ids");
  }
  return { ...target, label: "the real controller, 1 000 nodes, SQLite", nodeIds: nodeIds as string[] };
}
