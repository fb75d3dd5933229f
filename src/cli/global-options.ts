import type { Command } from "commander";
import { type Connection, openConnection } from "../client/connection.ts";
import { type OutputFormat, parseOutputFormat } from "./output.ts";

/** The options every command inherits from `corral` itself. */
export interface GlobalOptions {
  server?: string;
  output: string;
  credentials?: string;
  token?: string;
  ca?: string;
}

export interface Globals {
  readonly output: OutputFormat;
  /** Opens the connection the global options describe (reads credential files; exit 2 if missing). */
  connect(timeoutMs?: number): Promise<Connection>;
}

export function globalsOf(command: Command): Globals {
  const global = command.optsWithGlobals<GlobalOptions>();
  const output = parseOutputFormat(global.output);
  return {
    output,
    connect: (timeoutMs) =>
      openConnection({
        server: global.server,
        credentials: global.credentials,
        token: global.token,
        ca: global.ca,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      }),
  };
}
