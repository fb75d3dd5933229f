import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ControllerProcess, type CorralProcesses, corralBin } from "../helpers/corral-processes.ts";

export { corralBin };

export interface HaControllerOptions {
  readonly name: string;
  readonly endpoint: string;
  readonly keyFile: string;
  readonly prefix?: string;
  readonly leaseTtl?: string;
  readonly lastSeenFlush?: string;
  readonly liveness?: Readonly<Record<string, string>>;
}

/** Writes a controller YAML on etcd (every address on port 0) into `dir` and runs `corral controller`. */
export async function startEtcdControllerProcess(
  processes: CorralProcesses,
  dir: string,
  options: HaControllerOptions,
): Promise<ControllerProcess> {
  const lines = [
    "node:",
    `  name: ${JSON.stringify(options.name)}`,
    "http:",
    "  address: 127.0.0.1:0",
    "grpcBridge:",
    "  address: 127.0.0.1:0",
    "web:",
    "  address: 127.0.0.1:0",
    `dataDir: ${JSON.stringify(join(dir, "data"))}`,
    "shutdownGrace: 1s",
    "store:",
    "  etcd:",
    `    endpoints: [${JSON.stringify(options.endpoint)}]`,
    `    prefix: ${JSON.stringify(options.prefix ?? "/corral-ha")}`,
    `    leaseTtl: ${options.leaseTtl ?? "2s"}`,
    ...(options.lastSeenFlush === undefined ? [] : [`    lastSeenFlush: ${options.lastSeenFlush}`]),
    "ca:",
    `  keyFile: ${JSON.stringify(options.keyFile)}`,
    ...(options.liveness === undefined
      ? []
      : ["liveness:", ...Object.entries(options.liveness).map(([k, v]) => `  ${k}: ${v}`)]),
    "",
  ];
  const file = join(dir, "controller.yaml");
  await writeFile(file, lines.join("\n"));
  const proc = processes.start(["controller", "--config", file, "--log-level", "warn"]);
  const banner = await proc.waitForOutput(/cluster \(gRPC, TLS\)\s+(\S+)\n\s+bridge \(gRPC, h2c\)\s+(\S+)\n/);
  const cluster = banner[1] ?? "";
  const bridge = banner[2] ?? "";
  return {
    process: proc,
    cluster,
    bridge,
    bridgePort: Number(bridge.slice(bridge.lastIndexOf(":") + 1)),
  };
}
