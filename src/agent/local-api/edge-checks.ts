import { nodeLimits } from "../../core/nodes/node-limits.ts";
import type { GuardOptions } from "../../rpc/request-guard.ts";

/**
 * The local API's bounds, checked before any of its calls is served or passed on to the controller:
 * a node named in a request (`node_id`, `node`) can be no longer than any node's id or name, so a
 * longer one is refused here with INVALID_ARGUMENT instead of travelling over the agent's own link.
 */
export const localApiGuard: GuardOptions = {
  maxNodeReferenceChars: Math.max(nodeLimits.maxIdLength, nodeLimits.maxNameLength),
};
