import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import type { NodeRecord } from "../../core/nodes/node.ts";
import type { NodeHealthBook } from "../../core/nodes/node-health.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import { defaults } from "../../defaults.ts";
import type { ControlPlane, NodeState } from "../../gen/picontroller_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { Admission } from "../../security/admission.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import { describePrincipal } from "../../security/principal.ts";
import type { ClusterFacts, Heartbeats } from "../face-context.ts";
import { peerHost } from "../peer.ts";
import { nodeResources, registeredResources } from "./registration.ts";

type NodeStateInit = Omit<NodeState, "$typeName" | "$unknown">;

function nodeState(node: NodeRecord): NodeStateInit {
  return {
    nodeId: node.id,
    name: node.name,
    address: node.port === 0 ? node.address : `${node.address}:${node.port}`,
    status: node.status,
    lastSeen: BigInt(node.lastSeenAt),
    labels: node.labels,
    role: node.role,
    resources: nodeResources(node),
  };
}

function removedState(nodeId: string): NodeStateInit {
  return {
    nodeId,
    name: "",
    address: "",
    status: "removed",
    lastSeen: 0n,
    labels: {},
    role: "",
    resources: undefined,
  };
}

/** The node a call is about: a node may speak only for itself; people name the node. */
function subjectNode(ctx: HandlerContext, requested: string): string {
  const principal = principalOf(ctx);
  if (principal.kind === "node") {
    if (requested !== "" && requested !== principal.nodeId) {
      throw new CorralError(
        "PERMISSION_DENIED",
        `node ${principal.nodeId} may report only about itself, not ${requested}`,
      );
    }
    return principal.nodeId;
  }
  if (requested.trim() === "")
    throw CorralError.invalidArgument("node_id", "is empty; name the node the report is about");
  return requested;
}

/** What Pi-Controller's ControlPlane touches: admission for registration, health reports, the nodes. */
export interface PiControlPlaneDeps {
  readonly registry: NodeRegistry;
  readonly facts: Pick<ClusterFacts, "clusterId" | "controllerName" | "leader">;
  readonly clock: Clock;
  readonly admission: Admission;
  readonly ca: Pick<CertificateAuthority, "certificatePem">;
  readonly heartbeats: Heartbeats;
  readonly health: NodeHealthBook;
}

export function piControlPlane({
  registry,
  facts,
  clock,
  admission,
  ca,
  heartbeats,
  health,
}: PiControlPlaneDeps): Partial<ServiceImpl<typeof ControlPlane>> {
  return {
    /**
     * Registration for Pi-Controller-style agents, on the same path as every other join: a join token
     * in the `corral-join-token` metadata admits the node at once; an operator (or the loopback bridge)
     * may register it directly. Anyone else files a join request and is answered at once with status
     * "pending" and the request's id; calling again with the same CSR (same key) answers "pending" while
     * it waits, the certificate once an operator has accepted it, UNAUTHENTICATED once rejected.
     */
    async registerNode(request, ctx) {
      if (request.csrPem.trim() === "") {
        throw CorralError.invalidArgument(
          "csr_pem",
          "is empty; send a PEM certificate request for the node's key",
        );
      }
      const principal = principalOf(ctx);
      const approvedBy =
        principal.kind === "local" || (principal.kind === "operator" && principal.role !== "viewer")
          ? describePrincipal(principal)
          : undefined;
      const registered = registeredResources(request.resources);
      const input = {
        nodeId: request.nodeId,
        name: request.name,
        metadata: registered.metadata,
        address: request.address,
        csrPem: request.csrPem,
        token: ctx.requestHeader.get(defaults.distributedLlm.joinTokenHeader) ?? "",
        resources: registered.resources,
        services: [],
        labels: request.labels,
        version: request.version,
        sourceAddress: peerHost(ctx),
      };
      const heartbeatIntervalSeconds = Math.max(1, Math.round(heartbeats.nextInterval() / 1000));
      const outcome =
        approvedBy !== undefined || input.token !== ""
          ? await admission.join(input, ctx.signal, approvedBy)
          : await admission.joinWithoutWaiting(input);
      if ("pending" in outcome) {
        const { pending } = outcome;
        return {
          success: true,
          nodeId: pending.nodeId,
          message:
            `join request ${pending.id} for ${pending.name} is waiting for an operator (corral requests accept ${pending.id}); ` +
            "call RegisterNode again with the same CSR to collect the certificate once it is accepted",
          heartbeatIntervalSeconds,
          status: "pending",
          requestId: BigInt(pending.id),
        };
      }
      return {
        success: true,
        nodeId: outcome.node.id,
        message: `node ${outcome.node.name} registered`,
        heartbeatIntervalSeconds,
        certificatePem: outcome.certificate.certificatePem,
        caCertificatePem: ca.certificatePem,
        status: outcome.node.status,
      };
    },

    /** The node's latest health, component by component; a report from a node also counts as a heartbeat. */
    async reportHealth(request, ctx) {
      const nodeId = subjectNode(ctx, request.nodeId);
      const node = await registry.get(nodeId);
      await health.report({
        nodeId: node.id,
        status: request.status as "OK",
        checks: request.checks.map((c) => ({ name: c.name, status: c.status as "OK", message: c.message })),
        reportedAt: request.timestamp === 0n ? clock.now() : Number(request.timestamp),
        reportedBy: describePrincipal(principalOf(ctx)),
      });
      if (principalOf(ctx).kind === "node") await heartbeats.heartbeat(node.id);
      return {};
    },

    /**
     * A snapshot with its revision, or with `since_revision` only the nodes changed after it (removed
     * ones with status "removed"). If that history was compacted away, a full snapshot is returned:
     * the caller can tell by comparing the node count with its own. The snapshot is the store's alone
     * (last_seen as stored, not this controller's in-memory heartbeat times; the leader by election),
     * so every controller of an HA cluster returns the same one for the same revision.
     */
    async syncClusterState(request) {
      if (request.sinceRevision < 0n)
        throw CorralError.invalidArgument("since_revision", "must not be negative");
      const base = {
        clusterId: facts.clusterId,
        leader: facts.leader?.() ?? facts.controllerName,
        timestamp: BigInt(clock.now()),
      };
      if (request.sinceRevision > 0n) {
        const changed = await registry.changedSince(Number(request.sinceRevision));
        if (changed !== undefined) {
          const nodes = changed.changes.map(({ id, node }) =>
            node === undefined ? removedState(id) : nodeState(node),
          );
          return { ...base, revision: BigInt(changed.revision), nodes };
        }
      }
      // As stored (last-seen as written, not as heard here): every controller answers the same for a revision.
      const { nodes, revision } = await registry.stored();
      return { ...base, revision: BigInt(revision), nodes: nodes.map(nodeState) };
    },
  };
}
