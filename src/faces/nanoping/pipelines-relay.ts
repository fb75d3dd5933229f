import type { DescMethod } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import { PipelinesService } from "../../gen/pipelines_pb.ts";
import { hasProcessBlock } from "../../pipelines/process-policy.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { describePrincipal } from "../../security/principal.ts";
import { guardHandlers } from "../guard-handlers.ts";
import { type RelayDeps, relayToNode } from "../node-relay.ts";

/** The methods that store a config: where a `process` block would come in. */
const storesConfig = new Set(["createPipeline", "updatePipeline"]);

/**
 * PipelinesService on the controller: every call names its node (`node_id`); it runs here for the
 * controller's own node and is passed to the owning agent over mTLS otherwise. Unknown node:
 * NOT_FOUND; a node that does not offer PIPELINES: FAILED_PRECONDITION; node unreachable: UNAVAILABLE.
 *
 * Who may: a node only about itself (every method: a pipeline is a way to run code, and its config
 * may hold secrets); a config with a `process` block only from an admin. Both are refused here,
 * before anything reaches the node, so a refusal changes nothing. The node checks its own allow-list
 * of programs again (src/pipelines/process-policy.ts).
 */
export function controllerPipelinesService(
  context: RelayDeps,
  local: Partial<ServiceImpl<typeof PipelinesService>>,
): Partial<ServiceImpl<typeof PipelinesService>> {
  const relayed = relayToNode(PipelinesService, context, local, (request) => nodeIdOf(request));
  const check = async (request: unknown, ctx: HandlerContext, method: DescMethod) => {
    const nodeId = nodeIdOf(request);
    if (nodeId === "")
      throw CorralError.invalidArgument("node_id", "must name the node that owns the pipeline");
    const principal = principalOf(ctx);
    const node = await context.registry.get(nodeId);
    if (principal.kind === "node" && node.id !== principal.nodeId)
      throw new CorralError(
        "PERMISSION_DENIED",
        `${describePrincipal(principal)} may only use the pipelines of its own node, not of ${node.name}`,
        { details: { "denied-by": "pipelines-self-only" } },
      );
    if (
      storesConfig.has(method.localName) &&
      !(principal.kind !== "anonymous" && principal.role === "admin") &&
      hasProcessBlock((request as { jsonConfig?: string }).jsonConfig ?? "")
    )
      throw new CorralError(
        "PERMISSION_DENIED",
        `${describePrincipal(principal)} may not store a pipeline with a process block: process blocks run programs on the node, so only admins may add or change them`,
        { details: { field: "json_config", "denied-by": "process-blocks-admin-only" } },
      );
    if (!node.services.includes("PIPELINES"))
      throw new CorralError("FAILED_PRECONDITION", `node ${node.name} does not offer the PIPELINES service`);
  };
  return guardHandlers(PipelinesService, relayed, check);
}

function nodeIdOf(request: unknown): string {
  return ((request as { nodeId?: string }).nodeId ?? "").trim();
}
