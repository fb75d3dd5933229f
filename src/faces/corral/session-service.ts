import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../../base/clock.ts";
import {
  ListJoinRequestsRequestSchema,
  WatchJoinRequestsRequestSchema,
} from "../../gen/corral/v1/join_pb.ts";
import { WatchMembersRequestSchema } from "../../gen/corral/v1/members_pb.ts";
import { WatchNodeMetricsRequestSchema } from "../../gen/corral/v1/metrics_pb.ts";
import { WatchModelsRequestSchema } from "../../gen/corral/v1/models_pb.ts";
import { WatchNodesRequestSchema } from "../../gen/corral/v1/nodes_pb.ts";
import type { SessionService, WatchClusterResponseSchema } from "../../gen/corral/v1/session_pb.ts";
import { Role } from "../../gen/corral/v1/tokens_pb.ts";
import { mergeStreams } from "../../rpc/merge-streams.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import { accessRuleFor, accessTable } from "../../security/access-table.ts";
import { describePrincipal, type Role as RoleName } from "../../security/principal.ts";
import { type MembersServiceDeps, membersService } from "../cart-actor/members-service.ts";
import type { ClusterFacts } from "../face-context.ts";
import { type JoinServiceDeps, joinService } from "./join-service.ts";
import { type MetricsServiceDeps, metricsService } from "./metrics-service.ts";
import { type ModelsServiceDeps, modelsService } from "./models-service.ts";
import { type NodesServiceDeps, nodesService } from "./nodes-service.ts";

const roleToEnum: Record<RoleName, Role> = {
  viewer: Role.VIEWER,
  operator: Role.OPERATOR,
  admin: Role.ADMIN,
  node: Role.NODE,
};

type Event = NonNullable<MessageInitShape<typeof WatchClusterResponseSchema>["event"]>;

async function* tagged<T>(source: AsyncIterable<T>, tag: (item: T) => Event): AsyncGenerator<Event> {
  for await (const item of source) yield tag(item);
}

/** What the session face touches: what the watches it merges touch, plus this cluster's names and the time. */
export type SessionServiceDeps = NodesServiceDeps &
  JoinServiceDeps &
  ModelsServiceDeps &
  MembersServiceDeps &
  MetricsServiceDeps & { readonly facts: ClusterFacts; readonly clock: Clock };

/** corral.v1.SessionService: who the caller is, and the cluster-wide watches on one stream. */
export function sessionService(context: SessionServiceDeps): Partial<ServiceImpl<typeof SessionService>> {
  const nodes = nodesService(context);
  const join = joinService(context);
  const models = modelsService(context);
  const members = membersService(context);
  const metrics = metricsService(context);
  const may = (ctx: HandlerContext, path: string) => {
    const principal = principalOf(ctx);
    return principal.kind !== "anonymous" && accessRuleFor(path).roles.includes(principal.role);
  };
  return {
    async whoAmI(_request, ctx) {
      const principal = principalOf(ctx);
      const role = principal.kind === "anonymous" ? undefined : principal.role;
      return {
        role: role === undefined ? Role.UNSPECIFIED : roleToEnum[role],
        principal: describePrincipal(principal),
        clusterId: context.facts.clusterId,
        controllerName: context.facts.controllerName,
        allowedMethods:
          role === undefined
            ? []
            : Object.entries(accessTable)
                .filter(([, rule]) => rule.anonymous === true || rule.roles.includes(role))
                .map(([path]) => path),
      };
    },

    async *watchCluster(_request, ctx) {
      // Every watch below must end with this call, including the ones still waiting for a change.
      const stop = new AbortController();
      const onAbort = () => stop.abort(ctx.signal.reason);
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const inner = Object.create(ctx, { signal: { value: stop.signal } }) as HandlerContext;
      const sources: AsyncIterable<Event>[] = [];
      // Each part is sent only to roles its own Watch method is open to.
      if (nodes.watchNodes && may(ctx, "/corral.v1.NodesService/WatchNodes"))
        sources.push(
          tagged(nodes.watchNodes(create(WatchNodesRequestSchema), inner), (value) => ({
            case: "node",
            value,
          })),
        );
      if (models.watchModels && may(ctx, "/corral.v1.ModelsService/WatchModels"))
        sources.push(
          tagged(models.watchModels(create(WatchModelsRequestSchema), inner), (value) => ({
            case: "model",
            value,
          })),
        );
      if (members.watchMembers && may(ctx, "/corral.v1.MembersService/WatchMembers"))
        sources.push(
          tagged(members.watchMembers(create(WatchMembersRequestSchema), inner), (value) => ({
            case: "member",
            value,
          })),
        );
      if (metrics.watchNodeMetrics && may(ctx, "/corral.v1.MetricsService/WatchNodeMetrics"))
        sources.push(
          tagged(
            metrics.watchNodeMetrics(
              create(WatchNodeMetricsRequestSchema, { nodeId: "", sinceUnixMs: context.clock.now() }),
              inner,
            ),
            (value) => ({ case: "metrics", value }),
          ),
        );
      const { listJoinRequests, watchJoinRequests } = join;
      if (listJoinRequests && watchJoinRequests && may(ctx, "/corral.v1.JoinService/WatchJoinRequests")) {
        sources.push(
          (async function* (): AsyncGenerator<Event> {
            // The list adds recent answers; the watch then sends every pending request again and every
            // change from its own start, so nothing falls between the two.
            const list = await listJoinRequests(
              create(ListJoinRequestsRequestSchema, { includeDecided: true }),
              inner,
            );
            yield { case: "joinRequests", value: list };
            const changes = watchJoinRequests(create(WatchJoinRequestsRequestSchema), inner);
            yield* tagged(changes, (value) => ({ case: "joinRequest", value }));
          })(),
        );
      }
      try {
        for await (const event of mergeStreams(sources)) yield { event };
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        stop.abort();
      }
    },
  };
}
