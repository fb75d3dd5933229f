import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { JobView, ProvisioningEngine } from "../../core/provisioning/provisioning-engine.ts";
import type { RunStatus } from "../../core/provisioning/provisioning-job.ts";
import type { ControlPlane, ProvisioningResponseSchema } from "../../gen/picontroller_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { describePrincipal } from "../../security/principal.ts";
import type { ClusterFacts } from "../face-context.ts";

/** Pi-Controller's four job statuses; a cancelled job is a failed one there, its message says why. */
const piStatus: Readonly<Record<RunStatus, string>> = {
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  cancelled: "failed",
};

export function provisioningResponse(view: JobView): MessageInitShape<typeof ProvisioningResponseSchema> {
  const job = view.job;
  const what = `${job.plan}@${job.planVersion} on ${job.targets.length} node${job.targets.length === 1 ? "" : "s"}`;
  return {
    jobId: job.id,
    status: piStatus[job.status],
    message: job.dryRun
      ? `dry run of ${what}: nothing was run`
      : `job ${job.id}: ${what}${job.message ? `: ${job.message}` : ""}`,
    steps: view.nodes.flatMap((run) =>
      run.steps.map((step) => ({
        nodeId: run.nodeId,
        name: step.name,
        status: step.status,
        message: step.message || step.description,
      })),
    ),
  };
}

/** What Pi-Controller's RequestProvisioning touches: the dispatcher, and this cluster's id. */
export interface PiProvisioningDeps {
  readonly provisioning: ProvisioningEngine;
  readonly facts: ClusterFacts;
}

/**
 * ControlPlane/RequestProvisioning: a job of the provisioning engine. `node_id` (an id or a name)
 * targets one node; `cluster_id` targets every ready agent of this cluster when it is this cluster's id,
 * else every ready agent whose label `cluster` equals it. Answers at once with the job queued (a dry run
 * answers finished, every step saying what it would do); follow it with `corral provision status`.
 */
export function piRequestProvisioning({
  provisioning,
  facts,
}: PiProvisioningDeps): Pick<ServiceImpl<typeof ControlPlane>, "requestProvisioning"> {
  return {
    async requestProvisioning(request, ctx) {
      const nodeId = request.nodeId.trim();
      const clusterId = request.clusterId.trim();
      if (nodeId !== "" && clusterId !== "")
        throw CorralError.invalidArgument("node_id", "give node_id or cluster_id, not both");
      if (nodeId === "" && clusterId === "")
        throw CorralError.invalidArgument(
          "node_id",
          "give node_id (one node) or cluster_id (every node of a cluster)",
        );
      if (request.plan.trim() === "") throw CorralError.invalidArgument("plan", "is empty; name a plan");
      const target =
        nodeId !== ""
          ? { nodes: [nodeId], all: false, selector: {} }
          : clusterId === facts.clusterId
            ? { nodes: [], all: true, selector: {} }
            : { nodes: [], all: false, selector: { cluster: clusterId } };
      try {
        const view = await provisioning.runPlan({
          plan: request.plan.trim(),
          ...target,
          parameters: request.parameters,
          dryRun: request.dryRun,
          concurrency: 0,
          createdBy: describePrincipal(principalOf(ctx)),
        });
        return provisioningResponse(view);
      } catch (error) {
        if (
          clusterId !== "" &&
          error instanceof CorralError &&
          error.code === "FAILED_PRECONDITION" &&
          /^no ready agent/.test(error.message)
        )
          throw new CorralError(
            "NOT_FOUND",
            `cluster "${clusterId}" has no ready agent (this cluster is ${facts.clusterId}; other clusters are nodes labelled cluster=<id>)`,
          );
        throw error;
      }
    },
  };
}
