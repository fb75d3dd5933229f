import { CorralError } from "../base/errors.ts";

/** The newest NanoPing config format version corral understands (the guide's config is 13). */
export const supportedConfigVersion = 13;
/** Largest `json_config` accepted, in bytes. */
export const maxConfigBytes = 1024 * 1024;

/** A link end: `[<instance>|in:<port>]` or `[<instance>|out:<port>]`. */
export interface LinkEnd {
  readonly instance: string;
  readonly port: number;
}

/** One wire: from a source block's output port to a sink block's input port. */
export interface Link {
  readonly text: string;
  readonly to: LinkEnd;
  readonly from: LinkEnd;
  /** Set when the two ends are on different nodes (`udp` settings on both blocks). */
}

export type BlockSettings =
  | {
      readonly type: "uniform_traffic_source";
      readonly output: string;
      readonly totalPackets: number;
      /** Microseconds between packets; 0 sends as fast as the link accepts. */
      readonly intervalUs: number;
      /** Payload bytes; bounded by the sink's mtu. */
      readonly packetSize: number;
    }
  | { readonly type: "traffic_sink"; readonly input: string; readonly mtu: number }
  | {
      /** Binds a UDP socket and passes every datagram to its output (a block on another node sends here). */
      readonly type: "udp_receiver";
      readonly output: string;
      /** Address to bind: default 0.0.0.0 (every interface). */
      readonly bind: string;
      /** 0 (the default) picks a free port; the run reports the one bound. */
      readonly port: number;
    }
  | {
      /** Sends every packet of its input as one datagram to a udp_receiver (or any host:port). */
      readonly type: "udp_sender";
      readonly input: string;
      readonly target: UdpTarget;
    }
  | {
      readonly type: "process";
      readonly argv: readonly string[];
      readonly env: Readonly<Record<string, string>>;
      readonly cwd?: string;
      readonly output?: string;
    };

/** Where a udp_sender sends: a udp_receiver block of a pipeline on a node (resolved through the
 * controller when the run starts), or a fixed address. */
export type UdpTarget =
  | { readonly node: string; readonly pipeline: string; readonly block: string }
  | { readonly host: string; readonly port: number };

export interface BlockInstance {
  readonly name: string;
  readonly settings: BlockSettings;
}

export interface PipelineGraph {
  readonly version: number;
  readonly blocks: readonly BlockInstance[];
  readonly links: readonly Link[];
}

export type ParsedConfig =
  | { readonly compatible: true; readonly graph: PipelineGraph }
  | { readonly compatible: false; readonly version: number };

/** The block types and their settings, as a JSON schema (published in the README too). */
export const blockSchema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  title: "corral pipeline config (NanoPing format)",
  type: "object",
  required: ["version", "plumr_config"],
  properties: {
    version: { type: "integer", minimum: 1, maximum: supportedConfigVersion },
    plumr_config: {
      type: "object",
      required: ["pipeline"],
      properties: {
        pipeline: {
          type: "object",
          additionalProperties: {
            type: "object",
            minProperties: 1,
            maxProperties: 1,
            properties: {
              uniform_traffic_source: {
                type: "object",
                required: ["output", "total_packets"],
                additionalProperties: false,
                properties: {
                  output: { type: "string", description: "link [<sink>|in:<n>]-[<this>|out:<n>]" },
                  total_packets: { type: "integer", minimum: 0 },
                  interval: { type: "integer", minimum: 0, description: "microseconds between packets" },
                  packet_size: { type: "integer", minimum: 16, description: "bytes, at most the sink's mtu" },
                },
              },
              traffic_sink: {
                type: "object",
                required: ["input"],
                additionalProperties: false,
                properties: {
                  input: { type: "string" },
                  mtu: { type: "integer", minimum: 16, maximum: 65_507 },
                },
              },
              udp_receiver: {
                type: "object",
                required: ["output"],
                additionalProperties: false,
                properties: {
                  output: { type: "string" },
                  bind: { type: "string", description: "address to bind (default 0.0.0.0)" },
                  port: { type: "integer", minimum: 0, maximum: 65_535, description: "0: any free port" },
                },
              },
              udp_sender: {
                type: "object",
                required: ["input", "target"],
                additionalProperties: false,
                properties: {
                  input: { type: "string" },
                  target: {
                    oneOf: [
                      {
                        type: "object",
                        required: ["node", "pipeline", "block"],
                        additionalProperties: false,
                        properties: {
                          node: { type: "string", description: "node id or name" },
                          pipeline: { type: "string", description: "pipeline name on that node" },
                          block: { type: "string", description: "its udp_receiver block" },
                        },
                      },
                      {
                        type: "object",
                        required: ["host", "port"],
                        additionalProperties: false,
                        properties: {
                          host: { type: "string" },
                          port: { type: "integer", minimum: 1, maximum: 65_535 },
                        },
                      },
                    ],
                  },
                },
              },
              process: {
                type: "object",
                required: ["argv"],
                additionalProperties: false,
                properties: {
                  argv: { type: "array", minItems: 1, items: { type: "string" } },
                  env: { type: "object", additionalProperties: { type: "string" } },
                  cwd: { type: "string" },
                  output: { type: "string", description: "stdout lines as packets on this link" },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

export const blockTypes = [
  "uniform_traffic_source",
  "traffic_sink",
  "udp_receiver",
  "udp_sender",
  "process",
] as const;

/** The link a block reads from (sinks, udp_sender), if any. */
export const inputOf = (s: BlockSettings): string | undefined =>
  s.type === "traffic_sink" || s.type === "udp_sender" ? s.input : undefined;
/** The link a block writes to (sources, udp_receiver, process), if any. */
export const outputOf = (s: BlockSettings): string | undefined =>
  s.type === "traffic_sink" || s.type === "udp_sender" ? undefined : s.output;

const linkPattern = /^\[([^|\]]+)\|in:(\d+)\]-\[([^|\]]+)\|out:(\d+)\]$/;

function bad(path: string, problem: string): never {
  throw CorralError.invalidArgument(`json_config${path}`, problem);
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function integer(value: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value)) bad(path, "must be an integer");
  if (value < min || value > max) bad(path, `must be between ${min} and ${max}`);
  return value;
}

function text(value: unknown, path: string): string {
  if (typeof value !== "string" || value === "") bad(path, "must be a non-empty string");
  return value;
}

function onlyKeys(settings: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(settings)) {
    if (!allowed.includes(key)) bad(`${path}.${key}`, `unknown setting (allowed: ${allowed.join(", ")})`);
  }
}

export function parseLink(value: string, path: string): Link {
  const match = linkPattern.exec(value);
  if (match === null) bad(path, `"${value}" is not a link [<sink>|in:<port>]-[<source>|out:<port>]`);
  const [, toInstance, toPort, fromInstance, fromPort] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  return {
    text: value,
    to: { instance: toInstance, port: Number(toPort) },
    from: { instance: fromInstance, port: Number(fromPort) },
  };
}

/**
 * Parses and checks a NanoPing pipeline config. Any problem is INVALID_ARGUMENT naming the JSON path
 * (`json_config.plumr_config.pipeline.<block>.<type>.<setting>`); a version newer than corral
 * supports parses as incompatible (stored, reported INCOMPATIBLE, refused at start).
 */
export function parsePipelineConfig(json: string): ParsedConfig {
  if (Buffer.byteLength(json, "utf8") > maxConfigBytes) bad("", `is larger than ${maxConfigBytes} bytes`);
  let root: unknown;
  try {
    root = JSON.parse(json);
  } catch (error) {
    bad("", `is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(root)) bad("", "must be a JSON object");
  const version = integer(root.version, ".version", 1);
  if (version > supportedConfigVersion) return { compatible: false, version };
  const plumr = root.plumr_config;
  if (!isObject(plumr)) bad(".plumr_config", "must be an object");
  const pipeline = plumr.pipeline;
  if (!isObject(pipeline)) bad(".plumr_config.pipeline", "must be an object");
  const blocks: BlockInstance[] = [];
  const base = ".plumr_config.pipeline";
  for (const [name, instance] of Object.entries(pipeline)) {
    const at = `${base}.${name}`;
    if (!isObject(instance)) bad(at, "must be an object with exactly one block type");
    const types = Object.keys(instance);
    if (types.length !== 1) bad(at, "must name exactly one block type");
    const type = types[0] as string;
    const settings = instance[type];
    const sp = `${at}.${type}`;
    if (!isObject(settings)) bad(sp, "settings must be an object");
    switch (type) {
      case "uniform_traffic_source":
        onlyKeys(settings, sp, ["output", "total_packets", "interval", "packet_size"]);
        blocks.push({
          name,
          settings: {
            type,
            output: text(settings.output, `${sp}.output`),
            totalPackets: integer(settings.total_packets, `${sp}.total_packets`, 0, 1e12),
            intervalUs:
              settings.interval === undefined
                ? 0
                : integer(settings.interval, `${sp}.interval`, 0, 3_600_000_000),
            packetSize:
              settings.packet_size === undefined
                ? 0
                : integer(settings.packet_size, `${sp}.packet_size`, 16, 65_507),
          },
        });
        break;
      case "traffic_sink":
        onlyKeys(settings, sp, ["input", "mtu"]);
        blocks.push({
          name,
          settings: {
            type,
            input: text(settings.input, `${sp}.input`),
            mtu: settings.mtu === undefined ? 1500 : integer(settings.mtu, `${sp}.mtu`, 16, 65_507),
          },
        });
        break;
      case "udp_receiver":
        onlyKeys(settings, sp, ["output", "bind", "port"]);
        blocks.push({
          name,
          settings: {
            type,
            output: text(settings.output, `${sp}.output`),
            bind: settings.bind === undefined ? "0.0.0.0" : text(settings.bind, `${sp}.bind`),
            port: settings.port === undefined ? 0 : integer(settings.port, `${sp}.port`, 0, 65_535),
          },
        });
        break;
      case "udp_sender": {
        onlyKeys(settings, sp, ["input", "target"]);
        const target = settings.target;
        const tp = `${sp}.target`;
        if (!isObject(target)) bad(tp, "must be {node, pipeline, block} or {host, port}");
        let parsed: UdpTarget;
        if ("host" in target || "port" in target) {
          onlyKeys(target, tp, ["host", "port"]);
          parsed = {
            host: text(target.host, `${tp}.host`),
            port: integer(target.port, `${tp}.port`, 1, 65_535),
          };
        } else {
          onlyKeys(target, tp, ["node", "pipeline", "block"]);
          parsed = {
            node: text(target.node, `${tp}.node`),
            pipeline: text(target.pipeline, `${tp}.pipeline`),
            block: text(target.block, `${tp}.block`),
          };
        }
        blocks.push({ name, settings: { type, input: text(settings.input, `${sp}.input`), target: parsed } });
        break;
      }
      case "process": {
        onlyKeys(settings, sp, ["argv", "env", "cwd", "output"]);
        const argv = settings.argv;
        if (!Array.isArray(argv) || argv.length === 0)
          bad(`${sp}.argv`, "must be a non-empty array of strings");
        argv.forEach((arg, i) => {
          if (typeof arg !== "string") bad(`${sp}.argv[${i}]`, "must be a string");
        });
        const env: Record<string, string> = {};
        if (settings.env !== undefined) {
          if (!isObject(settings.env)) bad(`${sp}.env`, "must be an object of strings");
          for (const [key, value] of Object.entries(settings.env)) {
            if (typeof value !== "string") bad(`${sp}.env.${key}`, "must be a string");
            env[key] = value;
          }
        }
        blocks.push({
          name,
          settings: {
            type,
            argv: argv as string[],
            env,
            ...(settings.cwd === undefined ? {} : { cwd: text(settings.cwd, `${sp}.cwd`) }),
            ...(settings.output === undefined ? {} : { output: text(settings.output, `${sp}.output`) }),
          },
        });
        break;
      }
      default:
        bad(`${at}.${type}`, `unknown block type "${type}" (known: ${blockTypes.join(", ")})`);
    }
  }
  return { compatible: true, graph: { version, blocks, links: wire(blocks, base) } };
}

/** Checks every link names an existing block with the right kind of port on both ends. */
function wire(blocks: readonly BlockInstance[], base: string): Link[] {
  const byName = new Map(blocks.map((block) => [block.name, block]));
  const links = new Map<string, Link>();
  for (const block of blocks) {
    const s = block.settings;
    const at = `${base}.${block.name}.${s.type}`;
    const input = inputOf(s);
    if (input !== undefined) {
      const link = parseLink(input, `${at}.input`);
      if (link.to.instance !== block.name)
        bad(`${at}.input`, `the sink end must be this block ("${block.name}")`);
      const source = byName.get(link.from.instance);
      if (source === undefined) bad(`${at}.input`, `no block "${link.from.instance}" in the pipeline`);
      if (outputOf(source.settings) !== input)
        bad(`${at}.input`, `block "${source.name}" has no output port ${link.from.port} on this link`);
      links.set(link.text, link);
      continue;
    }
    const output = outputOf(s);
    if (output === undefined) continue;
    const link = parseLink(output, `${at}.output`);
    if (link.from.instance !== block.name)
      bad(`${at}.output`, `the source end must be this block ("${block.name}")`);
    const sink = byName.get(link.to.instance);
    if (sink === undefined) bad(`${at}.output`, `no block "${link.to.instance}" in the pipeline`);
    if (inputOf(sink.settings) !== output)
      bad(`${at}.output`, `block "${sink.name}" has no input port ${link.to.port} on this link`);
    links.set(link.text, link);
  }
  return [...links.values()];
}
