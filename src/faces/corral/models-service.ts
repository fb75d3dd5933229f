import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import { type ModelRecord, type PlacementState, placedLayers } from "../../core/models/model.ts";
import type { ModelRegistry } from "../../core/models/model-registry.ts";
import type { NodeRegistry } from "../../core/nodes/node-registry.ts";
import {
  type Model,
  ModelEventType,
  ModelSchema,
  type ModelsService,
  PlacementState as PlacementStateEnum,
  type WatchModelsResponse,
} from "../../gen/corral/v1/models_pb.ts";

const stateToEnum: Record<PlacementState, PlacementStateEnum> = {
  unassigned: PlacementStateEnum.UNASSIGNED,
  placed: PlacementStateEnum.PLACED,
  partial: PlacementStateEnum.PARTIAL,
  unplaced: PlacementStateEnum.UNPLACED,
};

export function modelToMessage(model: ModelRecord, nameOf: (nodeId: string) => string): Model {
  return create(ModelSchema, {
    id: model.id,
    name: model.name,
    version: model.version,
    layerCount: model.layerCount,
    filePath: model.filePath,
    sizeBytes: BigInt(model.sizeBytes),
    assigned: model.assigned,
    state: stateToEnum[model.state],
    message: model.message,
    assignments: model.assignments.map((range) => ({
      nodeId: range.nodeId,
      nodeName: nameOf(range.nodeId),
      start: range.start,
      count: range.count,
    })),
    placedLayers: placedLayers(model),
    createdAt: timestampFromMs(model.createdAt),
    updatedAt: timestampFromMs(model.updatedAt),
  });
}

function required(value: string, field: string): string {
  if (value.trim() === "") throw CorralError.invalidArgument(field, "is empty; give a model id or name");
  return value;
}

/** What the models face touches: the model registry, node names, the feed for watches. */
export interface ModelsServiceDeps {
  readonly models: ModelRegistry;
  readonly registry: NodeRegistry;
  readonly feed: EventFeed;
}

/** corral.v1.ModelsService: the model registry and placement, for the CLI and the TUI. */
export function modelsService({
  models,
  registry,
  feed,
}: ModelsServiceDeps): Partial<ServiceImpl<typeof ModelsService>> {
  const names = async () => {
    const { nodes } = await registry.list();
    const byId = new Map(nodes.map((node) => [node.id, node.name]));
    return (id: string) => byId.get(id) ?? id;
  };
  return {
    async addModel(request) {
      if (request.sizeBytes < 0n) throw CorralError.invalidArgument("size_bytes", "must not be negative");
      const added = await models.add({
        name: request.name,
        version: request.version,
        layerCount: request.layerCount,
        filePath: request.filePath,
        sizeBytes: Number(request.sizeBytes),
      });
      const model = request.assign ? (await models.assign(added.id)).model : added;
      return { model: modelToMessage(model, await names()) };
    },

    async listModels() {
      const { models: list, revision } = await models.list();
      const nameOf = await names();
      return { models: list.map((model) => modelToMessage(model, nameOf)), revision: BigInt(revision) };
    },

    async getModel(request) {
      const model = await models.get(required(request.model, "model"));
      return { model: modelToMessage(model, await names()) };
    },

    async removeModel(request) {
      const model = await models.remove(required(request.model, "model"));
      return { model: modelToMessage(model, await names()) };
    },

    async assignModel(request) {
      const { model, outcome } = await models.assign(required(request.model, "model"));
      return {
        model: modelToMessage(model, await names()),
        movedLayers: outcome.change.moved,
        addedLayers: outcome.change.added,
      };
    },

    async unassignModel(request) {
      const { model } = await models.unassign(required(request.model, "model"));
      return { model: modelToMessage(model, await names()) };
    },

    async *watchModels(request, ctx) {
      if (request.fromRevision < 0n)
        throw CorralError.invalidArgument("from_revision", "must not be negative");
      const { nodes } = await registry.list();
      const nodeNames = new Map(nodes.map((node) => [node.id, node.name]));
      const nameOf = (id: string) => nodeNames.get(id) ?? id;
      let from = Number(request.fromRevision);
      if (from === 0) {
        const listing = await models.list();
        const revision = BigInt(listing.revision);
        for (const model of listing.models) {
          yield {
            type: ModelEventType.SNAPSHOT,
            revision,
            model: modelToMessage(model, nameOf),
          } satisfies Partial<WatchModelsResponse>;
        }
        yield { type: ModelEventType.SYNCED, revision };
        from = listing.revision + 1;
      }
      for await (const event of feed.watch({
        fromRevision: from,
        kinds: ["model", "node"],
        signal: ctx.signal,
      })) {
        if (event.kind === "node") {
          if (event.type === "node.put" && event.node !== undefined)
            nodeNames.set(event.node.id, event.node.name);
          continue;
        }
        if (event.model === undefined) continue;
        yield {
          type: event.type === "model.put" ? ModelEventType.PUT : ModelEventType.DELETED,
          revision: BigInt(event.revision),
          model: modelToMessage(event.model, nameOf),
        };
      }
    },
  };
}
