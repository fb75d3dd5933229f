/**
 * `npm run build`: corral as plain JavaScript in dist/, so the installed package runs without tsx,
 * TypeScript or any other development tool. One ESM bundle per entry point, split into chunks so a
 * command loads only what it uses (the CLI's commands are dynamic imports; see src/cli/command-table.ts).
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const root = join(import.meta.dirname, "..");
const outdir = join(root, "dist");

/**
 * Left to node_modules (so they stay runtime dependencies): native addons (a .node binary cannot be
 * bundled, and the optional GPIO/SPI/I²C bindings may be absent — the agent runs without them), and
 * packages that read files beside their own code.
 */
export const externalPackages = [
  "better-sqlite3",
  "i2c-bus",
  "spi-device",
  // etcd3 reads its .proto files beside its own code (__dirname) when it loads.
  "etcd3",
  // ink imports React's devtools only when DEV=true; it is not installed and never needed.
  "react-devtools-core",
];

rmSync(outdir, { recursive: true, force: true });
const started = performance.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: {
    corral: "src/cli/main.ts",
    // A worker thread's code must be a file of its own (src/pipelines/run.ts picks it in the package).
    "pipelines-worker": "src/pipelines/runtime-worker.ts",
    // The "corral/ownership" export for actor hosts.
    ownership: "src/client/ownership-client.ts",
  },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Whitespace and syntax only: names stay readable in stack traces without the source maps, and the
  // smaller source is less to parse and to keep (V8 holds each module's source text in its heap).
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  // Stack traces name the source files (node --enable-source-maps, which bin/corral.js turns on).
  sourcesContent: false,
  external: externalPackages,
  chunkNames: "chunks/[name]-[hash]",
  // Bundled CommonJS dependencies call require() for node's built-ins; ESM has none of its own.
  banner: {
    js: 'import { createRequire as __corralCreateRequire } from "node:module"; const require = __corralCreateRequire(import.meta.url);',
  },
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
});
// What each chunk holds, for footprint work (e.g. esbuild's analyzer, https://esbuild.github.io/analyze/).
if (process.env.CORRAL_BUILD_META !== undefined)
  writeFileSync(process.env.CORRAL_BUILD_META, JSON.stringify(result.metafile));
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
const files = Object.keys(result.metafile.outputs).filter((f) => !f.endsWith(".map")).length;
console.log(
  `dist/: ${files} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB with source maps, in ${Math.round(performance.now() - started)} ms`,
);
