#!/usr/bin/env node
// Which code runs: an installed package (no src/ beside bin/) runs the build in dist/; a clone of the
// repository runs the TypeScript sources through tsx, so a stale dist/ is never what tests exercise.
// CORRAL_USE_DIST=1 runs dist/ in a clone too (after `npm run build`). See the README, "Building and
// packaging".
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
const built = new URL("../dist/corral.js", import.meta.url);

if (existsSync(source) && process.env.CORRAL_USE_DIST !== "1") {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else if (existsSync(built)) {
  // Source maps cost memory and start-up time on every run; they are there for stack traces on request.
  if (process.env.CORRAL_SOURCE_MAPS === "1") process.setSourceMapsEnabled(true);
  await import(built.href);
} else {
  process.stderr.write(
    `corral: ${built.pathname} is missing: run \`npm run build\` (or unset CORRAL_USE_DIST to run the sources)\n`,
  );
  process.exitCode = 1;
}
