import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { longFunctions } from "./function-sizes.ts";

const controllerDir = fileURLToPath(new URL("../../src/controller/", import.meta.url));

/**
 * The controller is a composition root: a reader follows its start-up assembler by assembler. A
 * function that grows past this many lines is doing more than wiring; split it, or move the rule it
 * holds to core, engines or security.
 */
const maxLines = 80;

/**
 * Long functions still there, by file and name; the list only shrinks (an entry no longer long fails
 * the test too). The config resolver reads the whole YAML file in one go; it is shared by other work
 * under way, so it is split separately.
 */
const knownLong = new Set([
  "config.ts resolveControllerConfig",
  // One template string: the POSIX sh install script, with the controller's values put in.
  "install-script.ts renderInstallScript",
]);

describe("function sizes in src/controller", () => {
  it("no function, method or arrow in src/controller/*.ts is over 80 lines", () => {
    const files = readdirSync(controllerDir).filter((name) => name.endsWith(".ts"));
    assert.ok(files.includes("controller.ts"), "src/controller/controller.ts was not read");
    const long = files.flatMap((name) =>
      longFunctions(name, readFileSync(join(controllerDir, name), "utf8"), maxLines),
    );
    assert.deepEqual(
      long
        .filter((f) => !knownLong.has(`${f.file} ${f.name}`))
        .map((f) => `${f.file}:${f.line} ${f.name} is ${f.lines} lines`),
      [],
      "split these into named steps",
    );
    const present = new Set(long.map((f) => `${f.file} ${f.name}`));
    assert.deepEqual(
      [...knownLong].filter((entry) => !present.has(entry)),
      [],
      "no longer over the limit: take these off knownLong",
    );
  });

  it("catches a planted long function, method and arrow, and lets one of exactly 80 lines pass", () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join("\n");
    const planted = [
      `export function tooLong(): void {\n${body(79)}\n}`,
      `export function justRight(): void {\n${body(78)}\n}`,
      `class C {\n  static async start(): Promise<void> {\n${body(90)}\n  }\n}`,
      `export const arrow = () => {\n${body(100)}\n};`,
    ].join("\n\n");
    const found = longFunctions("planted.ts", planted, maxLines);
    assert.deepEqual(
      found.map((f) => `${f.name} ${f.lines}`),
      ["tooLong 81", "start 92", "arrow 102"],
    );
  });
});
