import { toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type Command, Option } from "commander";
import { CorralError } from "../../base/errors.ts";
import { enumText, isoTime } from "../../client/format.ts";
import { modelLimits } from "../../core/models/model.ts";
import { type Model, ModelSchema, ModelsService, PlacementState } from "../../gen/corral/v1/models_pb.ts";
import { globalsOf } from "../global-options.ts";
import { type Field, printJson, renderFields, renderTable } from "../output.ts";

const units: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Bytes, written as a number with an optional unit: 13000000000, 13GB, 12.1GiB. */
export function parseSize(text: string): bigint {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = units[(match?.[2] ?? "").toLowerCase()];
  const bytes = match?.[1] === undefined || unit === undefined ? Number.NaN : Number(match[1]) * unit;
  if (!Number.isFinite(bytes) || bytes > Number.MAX_SAFE_INTEGER) {
    throw CorralError.invalidArgument(
      "--size",
      `"${text}" is not a size in bytes (e.g. 13000000000, 13GB, 12GiB)`,
    );
  }
  return BigInt(Math.round(bytes));
}

export function parseLayers(text: string): number {
  const layers = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(layers) || layers < 1 || layers > modelLimits.maxLayerCount) {
    throw CorralError.invalidArgument(
      "--layers",
      `"${text}" is not a layer count from 1 to ${modelLimits.maxLayerCount}`,
    );
  }
  return layers;
}

function sizeText(bytes: bigint): string {
  const steps = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < steps.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${steps[unit]}`;
}

const stateText = (model: Model) => enumText(PlacementState, model.state);

function placementText(model: Model): string {
  return (
    model.assignments
      .map((r) =>
        r.count === 1 ? `${r.nodeName} [${r.start}]` : `${r.nodeName} [${r.start}-${r.start + r.count - 1}]`,
      )
      .join(", ") || "-"
  );
}

/** `corral models show`: the model and where each range of its layers is. */
export function describeModel(model: Model): string {
  const fields: Field[] = [
    ["name", model.name],
    ["id", model.id],
    ["version", model.version || "-"],
    ["layers", `${model.placedLayers} of ${model.layerCount} placed`],
    ["state", stateText(model)],
    ["message", model.message],
    ["size", sizeText(model.sizeBytes)],
    ["file", model.filePath || "-"],
    ["created", isoTime(model.createdAt)],
    ["updated", isoTime(model.updatedAt)],
    [
      "placement",
      model.assignments.map(
        (r) =>
          [
            r.nodeName,
            r.count === 1 ? `layer ${r.start}` : `layers ${r.start}-${r.start + r.count - 1} (${r.count})`,
          ] as const,
      ),
    ],
  ];
  return renderFields(fields);
}

export function registerModelsCommand(program: Command): void {
  const models = program
    .command("models")
    .alias("model")
    .description("the model registry and where each model's layers are placed")
    // `models add --version V` is the model's version, not corral's: declaring the flag here makes
    // main.ts read corral's own options only before "models", and this command's only before its
    // subcommand, so "add" gets it.
    .addOption(new Option("--version <version>", "(give it to `models add`)").hideHelp())
    .enablePositionalOptions();

  /** One call that answers with a model: printed as JSON, or as the line `line` makes of it. */
  const print = async (
    command: Command,
    call: (client: ModelsClient) => Promise<{ model?: Model | undefined }>,
    line: (model: Model) => string,
  ) => {
    const globals = globalsOf(command);
    // Placing a model reads the whole cluster: give it longer than a listing.
    const connection = await globals.connect(60_000);
    const response = await connection.call(call(connection.client(ModelsService)));
    const model = response.model;
    if (model === undefined) throw new Error("the controller answered without the model");
    if (globals.output === "json") printJson(toJson(ModelSchema, model));
    else process.stdout.write(`${line(model)}\n`);
  };

  models
    .command("add <name>")
    .description("register a model (it holds no layers until assigned)")
    .requiredOption("--layers <n>", "number of layers", parseLayers)
    .option("--version <version>", "the model's version", "")
    .option(
      "--size <bytes>",
      "size of the model file in bytes (13GB and 12GiB work too; default 0)",
      parseSize,
    )
    .option("--path <path>", "where the model file is", "")
    .option("--assign", "place its layers at once")
    .action(
      async (
        name: string,
        options: { layers: number; version: string; size?: bigint; path: string; assign?: boolean },
        command: Command,
      ) => {
        await print(
          command,
          (client) =>
            client.addModel({
              name,
              version: options.version,
              layerCount: options.layers,
              sizeBytes: options.size ?? 0n,
              filePath: options.path,
              assign: options.assign === true,
            }),
          (model) =>
            `added model ${model.name} (id ${model.id}, ${model.layerCount} layers): ${model.message}`,
        );
      },
    );

  models
    .command("ls")
    .alias("list")
    .description("list models and their placement")
    .action(async (_options: unknown, command: Command) => {
      const globals = globalsOf(command);
      const connection = await globals.connect();
      const response = await connection.call(connection.client(ModelsService).listModels({}));
      if (globals.output === "json") {
        printJson({
          revision: response.revision,
          models: response.models.map((m) => toJson(ModelSchema, m)),
        });
        return;
      }
      process.stdout.write(
        renderTable(
          ["name", "version", "layers", "state", "size", "placement"],
          response.models.map((model) => [
            model.name,
            model.version || "-",
            `${model.placedLayers}/${model.layerCount}`,
            stateText(model),
            sizeText(model.sizeBytes),
            placementText(model),
          ]),
        ),
      );
    });

  models
    .command("get <model>")
    .alias("show")
    .description("show one model, by id or name, with its layer ranges")
    .action(async (model: string, _options: unknown, command: Command) => {
      await print(
        command,
        (client) => client.getModel({ model }),
        (m) => describeModel(m).trimEnd(),
      );
    });

  models
    .command("rm <model>")
    .alias("remove")
    .description("remove a model; its layers are freed at once")
    .action(async (model: string, _options: unknown, command: Command) => {
      await print(
        command,
        (client) => client.removeModel({ model }),
        (m) => `removed model ${m.name} (id ${m.id})`,
      );
    });

  models
    .command("assign <model>")
    .description("place a model's layers on ready nodes: GPU nodes first, fewest nodes, contiguous ranges")
    .action(async (model: string, _options: unknown, command: Command) => {
      await print(
        command,
        (client) => client.assignModel({ model }),
        (m) => `${m.name}: ${m.message}`,
      );
    });

  models
    .command("unassign <model>")
    .description("free every layer of a model (it stays registered)")
    .action(async (model: string, _options: unknown, command: Command) => {
      await print(
        command,
        (client) => client.unassignModel({ model }),
        (m) => `${m.name}: ${m.message}`,
      );
    });
}

type ModelsClient = Client<typeof ModelsService>;
