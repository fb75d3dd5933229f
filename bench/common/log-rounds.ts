import { spawn } from "node:child_process";
import { type Client, ConnectError } from "@connectrpc/connect";
import type { PipelinesService } from "../../src/gen/pipelines_pb.ts";

/** Lines/s of `cat <path>` read by this process: the baseline of every log-stream figure. */
export async function catRate(path: string, expected: number): Promise<number> {
  const started = performance.now();
  const child = spawn("cat", [path], { stdio: ["ignore", "pipe", "ignore"] });
  let lines = 0;
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  }
  if (lines !== expected) throw new Error(`cat gave ${lines} lines`);
  return (lines / (performance.now() - started)) * 1000;
}

/** Pipelines whose one `process` block runs `argv` on `nodeId`, started one after another. */
export function catRuns(client: Client<typeof PipelinesService>, nodeId: string) {
  let created = 0;
  const start = async (argv: string[]): Promise<string> => {
    const name = `bench-${created++}`;
    await client.createPipeline({
      nodeId,
      name,
      jsonConfig: JSON.stringify({ version: 13, plumr_config: { pipeline: { cat: { process: { argv } } } } }),
    });
    return (await client.startPipeline({ nodeId, pipelineIdentifier: { case: "name", value: name } })).runId;
  };
  /**
   * Lines/s reaching an openLogStream client from a run that cats `path` (after 0.5 s), from the first
   * line to the last one the client got; how many it got and how the stream ended.
   */
  const logRound = async (path: string): Promise<{ rate: number; received: number; outcome: string }> => {
    const runId = await start(["/bin/sh", "-c", `sleep 0.5; exec cat ${path}`]);
    let received = 0;
    let first = 0;
    let last = 0;
    let outcome = "ended with the run";
    try {
      for await (const batch of client.openLogStream({
        nodeId,
        runId,
        options: { optionalLines: { case: "lines", value: 0n } },
      })) {
        for (const m of batch.messages) {
          if (!m.message.startsWith("cat: line-")) continue;
          if (received === 0) first = performance.now();
          received++;
          last = performance.now();
        }
      }
    } catch (error) {
      outcome = error instanceof ConnectError ? `ended: ${error.rawMessage}` : String(error);
    }
    return { rate: (received / Math.max(1, last - first)) * 1000, received, outcome };
  };
  return { start, logRound };
}
