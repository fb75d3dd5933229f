import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import ts from "typescript";

/** One relative import between two files under src/, as paths relative to src/ ("core/node.ts"). */
export interface ImportEdge {
  readonly from: string;
  readonly to: string;
}

/** Every relative import (static, dynamic, re-export) of every .ts/.tsx file under `srcDir`. */
export function importEdges(srcDir: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of sourceFiles(srcDir)) {
    const text = readFileSync(join(srcDir, file), "utf8");
    for (const { fileName } of ts.preProcessFile(text, true, true).importedFiles) {
      if (!fileName.startsWith(".")) continue;
      edges.push({ from: file, to: normalize(join(dirname(file), fileName)) });
    }
  }
  return edges;
}

export function sourceFiles(srcDir: string, sub = ""): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(join(srcDir, sub), { withFileTypes: true })) {
    const path = join(sub, entry.name);
    if (entry.isDirectory()) files.push(...sourceFiles(srcDir, path));
    else if (/\.tsx?$/.test(entry.name)) files.push(path);
  }
  return files;
}

/** The top-level folder a file belongs to; files at the top (defaults.ts, version.ts) are their own. */
export const layerOf = (file: string): string => file.split("/")[0] ?? file;

/** Files at the top of src/ that hold no logic and that every layer may read. */
const sharedLeaves = new Set(["defaults.ts", "version.ts"]);

/**
 * The arrows the architecture forbids (README, "Architecture"). Each rule names the arrow and says why,
 * so a failure tells the reader what to do instead.
 */
export const layerRules: readonly {
  readonly name: string;
  readonly forbids: (edge: ImportEdge, from: string, to: string) => boolean;
}[] = [
  {
    name: "base is the bottom: it imports nothing of corral's",
    forbids: (edge, from, to) => from === "base" && to !== "base" && !sharedLeaves.has(edge.to),
  },
  {
    name: "core imports only base, generated types and the store's interface (store/store.ts, store/types.ts)",
    forbids: (edge, from, to) =>
      from === "core" &&
      !["core", "base", "gen"].includes(to) &&
      !sharedLeaves.has(edge.to) &&
      !["store/store.ts", "store/types.ts"].includes(edge.to),
  },
  {
    name: "the store does not import the domain (core) nor anything above it",
    forbids: (_edge, from, to) =>
      from === "store" &&
      ["core", "wire", "faces", "agent", "controller", "rpc", "security", "cli", "tui"].includes(to),
  },
  {
    name: "engines depend on core, base, the store's interface and generated types only (the controller wires them)",
    forbids: (_edge, from, to) =>
      from === "engines" &&
      ["controller", "faces", "agent", "rpc", "cli", "tui", "pipelines", "wire"].includes(to),
  },
  {
    name: "wire translates core records to and from generated messages: it imports only base, core and gen (faces, the agent and the controller share it)",
    forbids: (edge, from, to) =>
      from === "wire" && !["wire", "base", "core", "gen"].includes(to) && !sharedLeaves.has(edge.to),
  },
  {
    name: "faces and the agent do not import each other (node-side services belong to the agent)",
    forbids: (_edge, from, to) =>
      (from === "faces" && to === "agent") || (from === "agent" && to === "faces"),
  },
  {
    name: "the agent does not import the controller",
    forbids: (_edge, from, to) => from === "agent" && to === "controller",
  },
  {
    name: "tools (cli, tui) reach the agent only through its entry point (agent/agent.ts)",
    forbids: (edge, from, to) =>
      (from === "cli" || from === "tui") && to === "agent" && edge.to !== "agent/agent.ts",
  },
  {
    name: "tools (cli, tui) do not import the faces: they are clients of the API, not part of the server",
    forbids: (_edge, from, to) => (from === "cli" || from === "tui") && to === "faces",
  },
  {
    name: "the tui does not import the cli (shared client code lives below both)",
    forbids: (_edge, from, to) => from === "tui" && to === "cli",
  },
  {
    name: "pipelines (the runtime) do not import the agent that hosts them",
    forbids: (_edge, from, to) => from === "pipelines" && to === "agent",
  },
];

export interface Violation extends ImportEdge {
  readonly rule: string;
}

export function violations(edges: readonly ImportEdge[]): Violation[] {
  const found: Violation[] = [];
  for (const edge of edges) {
    const from = layerOf(edge.from);
    const to = layerOf(edge.to);
    for (const rule of layerRules) if (rule.forbids(edge, from, to)) found.push({ ...edge, rule: rule.name });
  }
  return found;
}

/** Cycles between top-level folders (each reported once, as the folders in order). */
export function folderCycles(edges: readonly ImportEdge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    const a = layerOf(from);
    const b = layerOf(to);
    if (a === b || sharedLeaves.has(from) || sharedLeaves.has(to)) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)?.add(b);
  }
  const cycles = new Map<string, string[]>();
  const visit = (node: string, path: string[]) => {
    for (const next of graph.get(node) ?? []) {
      const at = path.indexOf(next);
      if (at >= 0) {
        const cycle = path.slice(at);
        const start = cycle.indexOf([...cycle].sort()[0] as string);
        const canonical = [...cycle.slice(start), ...cycle.slice(0, start)];
        cycles.set(canonical.join(" → "), canonical);
      } else visit(next, [...path, next]);
    }
  };
  for (const node of graph.keys()) visit(node, [node]);
  return [...cycles.values()];
}

export const describeEdge = (edge: ImportEdge) => `${edge.from} → ${edge.to}`;

/**
 * What core may take from Node: computation only. Hashing and random ids (crypto), path arithmetic on plan
 * paths (path), and telling IP literals apart (net's isIP*, no sockets).
 */
const coreNodeModules: ReadonlyMap<string, readonly string[] | "any"> = new Map<
  string,
  readonly string[] | "any"
>([
  ["node:crypto", "any"],
  ["node:path", "any"],
  ["node:net", ["isIP", "isIPv4", "isIPv6"]],
]);

const timerFunctions = new Set(["setTimeout", "setInterval", "setImmediate"]);

/**
 * Why a core file is not pure: it reads the time behind the injected clock (`Date.now()`, `new Date()`,
 * `performance.now()`), sets timers or sleeps, reads the environment, or imports a Node module that does
 * I/O. Read from the syntax tree, so comments and strings that mention these do not count.
 */
export function coreImpurities(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const at = (node: ts.Node, what: string) =>
    found.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} ${what}`);
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      const spec = node.moduleSpecifier;
      if (spec !== undefined && ts.isStringLiteral(spec) && spec.text.startsWith("node:")) {
        const allowed = coreNodeModules.get(spec.text);
        const names = importedNames(node);
        if (allowed === undefined) at(node, `imports ${spec.text}`);
        else if (allowed !== "any") {
          const extra = names === undefined ? ["*"] : names.filter((n) => !allowed.includes(n));
          if (extra.length > 0) at(node, `imports ${extra.join(", ")} from ${spec.text}`);
        }
      }
    } else if (ts.isPropertyAccessExpression(node)) {
      const target = node.expression.getText(source);
      const name = node.name.text;
      if ((target === "Date" || target === "performance") && name === "now") at(node, `${target}.now`);
      if (target === "process" && name === "env") at(node, "process.env");
      if (target === "globalThis" && timerFunctions.has(name)) at(node, name);
    } else if (ts.isNewExpression(node) && node.expression.getText(source) === "Date") {
      if ((node.arguments ?? []).length === 0) at(node, "new Date() (the time now)");
    } else if (ts.isCallExpression(node) && ts.isIdentifier(node.expression)) {
      if (timerFunctions.has(node.expression.text)) at(node, node.expression.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isStringLiteral(arg) && arg.text.startsWith("node:"))
        at(node, `imports ${arg.text} dynamically`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The names an import takes (undefined for a namespace or default import, which takes everything). */
function importedNames(node: ts.ImportDeclaration | ts.ExportDeclaration): string[] | undefined {
  if (ts.isExportDeclaration(node)) {
    const clause = node.exportClause;
    return clause !== undefined && ts.isNamedExports(clause)
      ? clause.elements.map((e) => (e.propertyName ?? e.name).text)
      : undefined;
  }
  const clause = node.importClause;
  if (clause === undefined || clause.name !== undefined) return undefined;
  const bindings = clause.namedBindings;
  if (bindings === undefined || !ts.isNamedImports(bindings)) return undefined;
  return bindings.elements.map((e) => (e.propertyName ?? e.name).text);
}
