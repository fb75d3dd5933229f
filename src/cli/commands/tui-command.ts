import type { Command } from "commander";
import { globalsOf } from "../global-options.ts";

/**
 * Ink renders only the final frame, and its colour detection turns colours off, when CI or
 * CONTINUOUS_INTEGRATION is set (both are read when Ink loads). The terminal UI runs only on a terminal,
 * where that guess is wrong, so this process forgets them.
 */
function notInCi(): void {
  for (const key of ["CI", "CONTINUOUS_INTEGRATION"]) delete process.env[key];
}

export function registerTuiCommand(program: Command): void {
  program
    .command("tui")
    .description("a live terminal UI: nodes, models, join requests and events (q quits)")
    .action(async (_options: unknown, command: Command) => {
      const connection = await globalsOf(command).connect();
      notInCi();
      // Loaded here so that other commands do not pay for React and Ink.
      const { runTui } = await import("../../tui/app.ts");
      await runTui(connection);
    });
}
