/**
 * Fails when src/gen differs from what `buf generate` makes of proto/ now: a proto edited without
 * regenerating, or generated code edited by hand.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = process.cwd();
const scratch = mkdtempSync(join(tmpdir(), "corral-gen-"));
try {
  const template = readFileSync(join(root, "buf.gen.yaml"), "utf8").replace(
    /out: src\/gen/g,
    `out: ${join(scratch, "gen")}`,
  );
  writeFileSync(join(scratch, "buf.gen.yaml"), template);
  execFileSync(
    join(root, "node_modules/.bin/buf"),
    ["generate", "--template", join(scratch, "buf.gen.yaml")],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
  const fresh = listFiles(join(scratch, "gen"));
  const committed = listFiles(join(root, "src/gen"));
  const problems: string[] = [];
  for (const file of new Set([...fresh.keys(), ...committed.keys()])) {
    const a = fresh.get(file);
    const b = committed.get(file);
    if (a === undefined) problems.push(`src/gen/${file} is not produced by the protos any more`);
    else if (b === undefined) problems.push(`src/gen/${file} is missing`);
    else if (a !== b) problems.push(`src/gen/${file} differs from what buf generates`);
  }
  if (problems.length > 0) {
    console.error(
      `Generated code is out of date:\n  ${problems.join("\n  ")}\nRun \`npm run gen\` and commit src/gen.`,
    );
    process.exit(1);
  }
  console.log(`codegen: src/gen matches proto/ (${fresh.size} files)`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

function listFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (path: string): void => {
    for (const name of readdirSync(path)) {
      const full = join(path, name);
      if (statSync(full).isDirectory()) walk(full);
      else files.set(relative(dir, full), readFileSync(full, "utf8"));
    }
  };
  walk(dir);
  return files;
}
