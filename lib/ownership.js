// "corral/ownership": the same rule as bin/corral.js — the build in an installed package, the
// TypeScript source (through tsx, scoped to this import) in a clone unless CORRAL_USE_DIST=1.
import { existsSync } from "node:fs";

const source = new URL("../src/client/ownership-client.ts", import.meta.url);

const module =
  existsSync(source) && process.env.CORRAL_USE_DIST !== "1"
    ? await (await import("tsx/esm/api")).tsImport(source.href, import.meta.url)
    : await import("../dist/ownership.js");

export const OwnershipClient = module.OwnershipClient;
