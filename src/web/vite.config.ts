import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/** The dashboard: built once at install time into web-dist/, served by the controller's web listener. */
export default defineConfig({
  root: here("."),
  base: "/",
  logLevel: "warn",
  // React's automatic runtime through vite's own TSX transform (no plugin needed).
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    outDir: here("../../web-dist"),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
});
