import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { addressField, parseConfigFile, readYamlFile } from "../base/config-file.ts";
import { defaults } from "../defaults.ts";

/**
 * `corral up --config agent.yaml`: every flag of `corral up` has a key of the same name in camelCase
 * (`--grpc` is `grpc`, `--pipeline-allow` is `pipelineAllow`, `--label` is the map `labels`). The same
 * rules as the controller's file: an unknown key is refused by name, relative paths are relative to the
 * file, and a flag given on the command line wins over the file.
 */
const address = addressField;

const fileSchema = z
  .object({
    name: z.string().min(1).max(128).optional(),
    labels: z.record(z.string().min(1), z.union([z.string(), z.number(), z.boolean()])).optional(),
    grpc: address("grpc").optional(),
    listen: address("listen").optional(),
    advertise: z.string().min(1).optional(),
    dataDir: z.string().min(1).optional(),
    /** The controllers' cluster addresses: one string, comma-separated, or a list. */
    join: z.union([z.string().min(1), z.array(address("join")).min(1)]).optional(),
    token: z.string().min(1).optional(),
    caFingerprint: z
      .string()
      .regex(/^sha256:[0-9a-fA-F:]{64,95}$/, "must be sha256:<hex>")
      .optional(),
    pipelineAllow: z.array(z.string().min(1)).optional(),
    insecure: z.boolean().optional(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).optional(),
    runAs: z.string().min(1).optional(),
    provisionAs: z.string().min(1).optional(),
    rootSteps: z.boolean().optional(),
  })
  .strict();

export type AgentFile = z.infer<typeof fileSchema>;

/** What `corral up` runs with, once flags, file and defaults are merged. */
export interface AgentSettings {
  readonly grpc: string;
  readonly listen: string;
  readonly advertise?: string;
  readonly dataDir: string;
  readonly join?: string;
  readonly token?: string;
  readonly caFingerprint?: string;
  readonly name?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly pipelineAllow: readonly string[];
  readonly insecure: boolean;
  readonly logLevel: string;
  readonly runAs: string;
  readonly provisionAs?: string;
  readonly rootSteps: boolean;
}

/** Only the flags a person typed (commander's defaults are left out, so the file can supply them). */
export type AgentFlags = Partial<Omit<AgentSettings, "labels">> & {
  readonly labels?: Readonly<Record<string, string>>;
};

export async function readAgentFile(path: string): Promise<{ file: AgentFile; baseDir: string }> {
  return { file: parseAgentFile(await readYamlFile(path), path), baseDir: resolve(path, "..") };
}

export function parseAgentFile(raw: unknown, source = "config"): AgentFile {
  return parseConfigFile(fileSchema, raw, source);
}

/** Flags over file over defaults; labels merge key by key (a flag's value wins). */
export function resolveAgentSettings(
  flags: AgentFlags,
  file: AgentFile = {},
  baseDir = process.cwd(),
): AgentSettings {
  const pick = <K extends keyof AgentFlags & keyof AgentFile>(key: K) => flags[key] ?? file[key];
  const join = flags.join ?? (Array.isArray(file.join) ? file.join.join(",") : file.join);
  const fileLabels = Object.fromEntries(Object.entries(file.labels ?? {}).map(([k, v]) => [k, String(v)]));
  const dataDir =
    flags.dataDir ?? (file.dataDir === undefined ? defaults.agent.dataDir : absolute(file.dataDir, baseDir));
  const advertise = pick("advertise");
  const token = pick("token");
  const caFingerprint = pick("caFingerprint");
  const name = pick("name");
  const provisionAs = pick("provisionAs");
  return {
    grpc: pick("grpc") ?? defaults.agent.localApiAddress,
    listen: pick("listen") ?? defaults.agent.listenAddress,
    dataDir,
    labels: { ...fileLabels, ...flags.labels },
    pipelineAllow: flags.pipelineAllow ?? file.pipelineAllow ?? [],
    insecure: pick("insecure") ?? false,
    logLevel: pick("logLevel") ?? "info",
    runAs: pick("runAs") ?? defaults.agent.runAs,
    rootSteps: pick("rootSteps") ?? true,
    ...(advertise === undefined ? {} : { advertise }),
    ...(join === undefined ? {} : { join }),
    ...(token === undefined ? {} : { token }),
    ...(caFingerprint === undefined ? {} : { caFingerprint }),
    ...(name === undefined ? {} : { name }),
    ...(provisionAs === undefined ? {} : { provisionAs }),
  };
}

function absolute(path: string, base: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}
