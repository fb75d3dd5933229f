// Worker entry: loads the TypeScript runtime through tsx (worker threads do not inherit loader hooks).
import { tsImport } from "tsx/esm/api";

await tsImport("./runtime-worker.ts", import.meta.url);
