import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Command } from "commander";
import { commandModules, modulesFor } from "../../src/cli/command-table.ts";

/** The lazy command table must name exactly what its modules register, or a command would vanish. */
describe("the CLI's command table", () => {
  it("each module registers exactly the top-level names (and aliases) the table gives it", async () => {
    for (const module of commandModules) {
      const program = new Command("corral");
      (await module.load())(program);
      const registered = program.commands.flatMap((c) => [c.name(), ...c.aliases()]).sort();
      assert.deepEqual(registered, [...module.names].sort(), `names of ${module.names[0]}`);
    }
  });

  it("loads only the named command's modules, none for --version, all for help or an unknown word", () => {
    const valued = new Set(["--server", "--token", "-o", "--output"]);
    const names = (argv: string[]) => modulesFor(argv, valued).map((m) => m.names[0]);
    assert.deepEqual(names(["up", "--token", "x"]), ["up"]);
    assert.deepEqual(names(["--server", "up", "status"]), ["status"], "a global option's value is skipped");
    assert.deepEqual(
      names(["gpio", "set", "1", "1"]),
      ["health", "gpio"],
      "both modules that add gpio verbs",
    );
    assert.deepEqual(names(["certificates", "ls"]), ["certs"], "aliases count");
    assert.deepEqual(names(["--version"]), []);
    assert.equal(names(["--help"]).length, commandModules.length);
    assert.equal(names([]).length, commandModules.length);
    assert.equal(names(["nope"]).length, commandModules.length);
  });
});
