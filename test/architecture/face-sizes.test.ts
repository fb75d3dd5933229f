import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const srcDir = fileURLToPath(new URL("../../src/", import.meta.url));

/** A face translates and validates; past this many lines it is holding rules or several faces (#18). */
const maxFaceLines = 300;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? tsFiles(join(dir, entry.name))
      : /\.tsx?$/.test(entry.name)
        ? [join(dir, entry.name)]
        : [],
  );
}

const lineCount = (text: string) => text.split("\n").length - (text.endsWith("\n") ? 1 : 0);

/** The files (relative to src/) over the limit, with their line counts. */
function oversized(files: ReadonlyMap<string, string>, limit: number): string[] {
  return [...files]
    .map(([path, text]) => [path, lineCount(text)] as const)
    .filter(([, lines]) => lines > limit)
    .map(([path, lines]) => `${path}: ${lines} lines`);
}

/** A face that takes the whole FaceContext says nothing of what it touches: it declares its deps instead. */
function takesWholeContext(files: ReadonlyMap<string, string>): string[] {
  return [...files]
    .filter(([path, text]) => path !== "faces/face-context.ts" && /\bFaceContext\b/.test(text))
    .map(([path]) => path);
}

describe("face files stay small and declare what they touch", () => {
  const faces = new Map(
    tsFiles(join(srcDir, "faces")).map((file) => [relative(srcDir, file), readFileSync(file, "utf8")]),
  );

  it("reads the faces", () => {
    assert.ok(faces.size > 30, `only ${faces.size} face files read: the reader is broken`);
  });

  it(`no file under src/faces/ is over ${maxFaceLines} lines`, () => {
    assert.deepEqual(
      oversized(faces, maxFaceLines),
      [],
      "split the face: rules to core/engines/security, helpers to their own file",
    );
  });

  it("no face takes the whole FaceContext", () => {
    assert.deepEqual(
      takesWholeContext(faces),
      [],
      "declare the narrow deps the face needs (see NodesServiceDeps)",
    );
  });

  it("the checks catch a planted oversized face and a planted whole-context face", () => {
    const planted = new Map([
      ["faces/corral/planted-service.ts", "x\n".repeat(maxFaceLines + 1)],
      ["faces/corral/small-service.ts", "x\n".repeat(maxFaceLines)],
      ["faces/corral/wide-service.ts", 'import type { FaceContext } from "../face-context.ts";\n'],
    ]);
    assert.deepEqual(oversized(planted, maxFaceLines), [
      `faces/corral/planted-service.ts: ${maxFaceLines + 1} lines`,
    ]);
    assert.deepEqual(takesWholeContext(planted), ["faces/corral/wide-service.ts"]);
  });
});
