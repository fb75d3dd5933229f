import { execFile } from "node:child_process";
import { access, mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import type { CorralProcess, CorralProcesses } from "../helpers/corral-processes.ts";

const repo = join(import.meta.dirname, "../..");
export const webDist = join(repo, "web-dist");
export const chromiumPath = "/usr/bin/chromium";

/** Flags that keep Debian's chromium quiet and quick on a machine without a network. */
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

export async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The dashboard must be built before the controller can serve it; build it when it is missing. */
export async function ensureWebBuilt(): Promise<void> {
  if (await exists(join(webDist, "index.html"))) return;
  await promisify(execFile)(
    process.execPath,
    [join(repo, "node_modules/vite/bin/vite.js"), "build", "--config", "src/web/vite.config.ts"],
    { cwd: repo, timeout: 300_000 },
  );
}

/** A loopback port free right now (the controller must keep its ports across a restart). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface WebController {
  readonly process: CorralProcess;
  readonly cluster: string;
  readonly bridgePort: number;
  readonly webUrl: string;
}

export interface WebControllerPorts {
  readonly cluster: number;
  readonly bridge: number;
  readonly web: number;
}

/** `corral controller` on fixed loopback ports, with short liveness settings, as `npm start` runs it. */
export async function startWebController(
  processes: CorralProcesses,
  dir: string,
  ports: WebControllerPorts,
): Promise<WebController> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, "controller.yaml");
  await writeFile(
    file,
    [
      "node:",
      '  name: "Dashboard Test"',
      "http:",
      `  address: 127.0.0.1:${ports.cluster}`,
      "grpcBridge:",
      `  address: 127.0.0.1:${ports.bridge}`,
      "web:",
      `  address: 127.0.0.1:${ports.web}`,
      "liveness:",
      "  minInterval: 1s",
      "  suspectAfterMissed: 3",
      "  downAfter: 6s",
      "metrics:",
      "  interval: 1s",
      `dataDir: ${JSON.stringify(join(dir, "data"))}`,
      "shutdownGrace: 1s",
      "",
    ].join("\n"),
  );
  const proc = processes.start(["controller", "--config", file, "--log-level", "warn"]);
  const banner = await proc.waitForOutput(/web\s+(http:\/\/\S+)\n/, 60_000);
  return {
    process: proc,
    cluster: `127.0.0.1:${ports.cluster}`,
    bridgePort: ports.bridge,
    webUrl: banner[1] ?? "",
  };
}
