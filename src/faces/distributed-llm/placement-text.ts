import type { PlacementOutcome } from "../../core/models/model-registry.ts";

/**
 * One sentence on what a pass did with the layers a node held: how many moved, and which models could
 * not be placed whole without it (they are partially placed now, waiting for capacity).
 */
export function describeLayerMoves(outcome: PlacementOutcome, nodeId: string): string {
  let held = 0;
  let moved = 0;
  const short: string[] = [];
  const after = new Map(outcome.models.map((model) => [model.id, model]));
  for (const before of outcome.previous) {
    const ranges = before.assignments.filter((range) => range.nodeId === nodeId);
    if (ranges.length === 0) continue;
    const now = after.get(before.id);
    for (const range of ranges) {
      for (let layer = range.start; layer < range.start + range.count; layer++) {
        held++;
        const owner = now?.assignments.find((r) => layer >= r.start && layer < r.start + r.count);
        if (owner !== undefined && owner.nodeId !== nodeId) moved++;
      }
    }
    if (now !== undefined && now.state !== "placed")
      short.push(`${now.name} is ${now.state} (${now.message})`);
  }
  if (held === 0) return "it held no model layers";
  const movedText = `${moved} of its ${held} model layer${held === 1 ? "" : "s"} moved to other nodes`;
  return short.length === 0 ? movedText : `${movedText}; ${short.join("; ")}`;
}
