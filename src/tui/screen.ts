import { formatSpan, shortFingerprint } from "../client/format.ts";
import { keyHelp } from "./keys.ts";
import {
  type Level,
  type LoadSample,
  type LogEntry,
  type ModelView,
  type NodeStatusName,
  type NodeView,
  noticeMs,
  type PlacementName,
  type RequestStateName,
  type RequestView,
  type Tab,
  type TuiState,
  tabs,
  tabTitles,
} from "./model.ts";
import { rangesText } from "./reducer.ts";
import {
  clusterTotals,
  listHeight,
  requestState,
  scrollWindow,
  selectedIndex,
  statusCounts,
  visibleLog,
  visibleModels,
  visibleNodes,
  visibleRequests,
} from "./selectors.ts";
import { sparkline } from "./sparkline.ts";
import { clockTime, fit, formatBytes, formatMb, sanitize, textWidth, truncate } from "./text.ts";

/**
 * The whole screen as lines of styled segments: a pure function of the state and the time, so that the
 * rendering layer only has to print it. Every line fits `state.columns`; there are `state.rows - 1`
 * lines (see listHeight).
 */

export type Color = "green" | "yellow" | "red" | "cyan" | "blue" | "magenta" | "gray";

export interface Segment {
  readonly text: string;
  readonly color?: Color;
  readonly bold?: boolean;
  readonly dim?: boolean;
  readonly inverse?: boolean;
}

export type Line = readonly Segment[];

/** Below this the screen only says it is too small. */
export const minColumns = 40;
export const minRows = 8;

interface Style {
  readonly color?: Color;
  readonly dim?: boolean;
  readonly bold?: boolean;
  readonly inverse?: boolean;
}

export function statusStyle(status: NodeStatusName): Style {
  switch (status) {
    case "ready":
      return { color: "green" };
    case "suspect":
      return { color: "yellow" };
    case "down":
      return { color: "red", bold: true };
    case "pending":
      return { color: "cyan" };
    default:
      return { dim: true };
  }
}

function placementStyle(state: PlacementName): Style {
  switch (state) {
    case "placed":
    case "assigned":
      return { color: "green" };
    case "partial":
      return { color: "yellow" };
    case "unplaced":
      return { color: "red" };
    default:
      return { dim: true };
  }
}

function requestStyle(state: RequestStateName): Style {
  switch (state) {
    case "pending":
      return { color: "cyan", bold: true };
    case "accepted":
      return { color: "green" };
    case "rejected":
      return { color: "red" };
    default:
      return { dim: true };
  }
}

function levelStyle(level: Level): Style {
  switch (level) {
    case "good":
      return { color: "green" };
    case "warn":
      return { color: "yellow" };
    case "bad":
      return { color: "red" };
    default:
      return {};
  }
}

const seg = (text: string, style: Style = {}): Segment => ({ text, ...style });

export function lineWidth(line: Line): number {
  return line.reduce((sum, segment) => sum + textWidth(segment.text), 0);
}

/** Cuts a line to `width` columns (the last segment that does not fit is truncated with "…"). */
export function clip(line: Line, width: number): Line {
  const out: Segment[] = [];
  let used = 0;
  for (const segment of line) {
    const w = textWidth(segment.text);
    if (used + w <= width) {
      out.push(segment);
      used += w;
      continue;
    }
    const room = width - used;
    if (room > 0) out.push({ ...segment, text: truncate(segment.text, room) });
    break;
  }
  return out;
}

/** A line of `left` and `right` segments with `right` flush to the right edge when there is room. */
function spread(left: Line, right: Line, width: number): Line {
  const gap = width - lineWidth(left) - lineWidth(right);
  return gap >= 1 ? [...left, seg(" ".repeat(gap)), ...right] : clip(left, width);
}

// ---------------------------------------------------------------- tables

interface Column<T> {
  readonly title: string;
  readonly min: number;
  /** Room it may grow to when the terminal is wide (min when absent). */
  readonly max?: number;
  /** Room it gets before spare room is shared out (min when absent). */
  readonly want?: number;
  /** 0 is kept longest; the highest is dropped first on a narrow terminal. */
  readonly priority: number;
  readonly align?: "left" | "right";
  readonly cell: (row: T, width: number) => Segment;
}

const gap = 2;
const markerWidth = 2;

/** The columns that fit `width`, each with its width: the least important go first, the rest grow. */
export function layoutColumns<T>(
  columns: readonly Column<T>[],
  width: number,
): { column: Column<T>; width: number }[] {
  const chosen = [...columns];
  const need = (list: readonly Column<T>[]) =>
    markerWidth + list.reduce((sum, c) => sum + c.min, 0) + gap * Math.max(0, list.length - 1);
  while (chosen.length > 1 && need(chosen) > width) {
    let drop = 0;
    for (let i = 1; i < chosen.length; i++)
      if ((chosen[i]?.priority ?? 0) >= (chosen[drop]?.priority ?? 0)) drop = i;
    chosen.splice(drop, 1);
  }
  let extra = Math.max(0, width - need(chosen));
  const widths = chosen.map((c) => c.min);
  const growOrder = chosen.map((c, i) => ({ c, i })).sort((a, b) => a.c.priority - b.c.priority);
  // First each column's `want` (names shown whole), the most important first…
  for (const { c, i } of growOrder) {
    const grow = Math.min(extra, Math.max(0, Math.min(c.want ?? c.min, c.max ?? c.min) - c.min));
    widths[i] = (widths[i] ?? 0) + grow;
    extra -= grow;
  }
  // …then what is left goes round the columns that can grow, a column at a time.
  let grew = true;
  while (extra > 0 && grew) {
    grew = false;
    for (const { c, i } of growOrder) {
      if (extra === 0) break;
      if ((widths[i] ?? 0) < (c.max ?? c.min)) {
        widths[i] = (widths[i] ?? 0) + 1;
        extra--;
        grew = true;
      }
    }
  }
  return chosen.map((column, i) => ({ column, width: widths[i] ?? column.min }));
}

function heading<T>(layout: readonly { column: Column<T>; width: number }[]): Line {
  const parts: Segment[] = [seg(" ".repeat(markerWidth))];
  layout.forEach(({ column, width }, i) => {
    if (i > 0) parts.push(seg(" ".repeat(gap)));
    parts.push(seg(fit(column.title, width, column.align), { bold: true, dim: true }));
  });
  return parts;
}

function tableRow<T>(
  layout: readonly { column: Column<T>; width: number }[],
  row: T,
  selected: boolean,
): Line {
  const parts: Segment[] = [seg(selected ? "▶ " : "  ", { color: "cyan", bold: true })];
  layout.forEach(({ column, width }, i) => {
    if (i > 0) parts.push(seg(" ".repeat(gap)));
    const cell = column.cell(row, width);
    const text = fit(cell.text, width, column.align);
    parts.push({ ...cell, text, ...(selected && i === 0 ? { inverse: true, bold: true } : {}) });
  });
  return parts;
}

// ---------------------------------------------------------------- load sparklines

function loadColor(percent: number): Color {
  return percent >= 85 ? "red" : percent >= 60 ? "yellow" : "green";
}

/** A sparkline of one figure with its latest value: `▁▂▃▅▇ 34%`. */
export function loadCell(
  samples: readonly LoadSample[] | undefined,
  pick: (sample: LoadSample) => number | undefined,
  width: number,
  unavailable: string | undefined,
): Segment {
  const values = (samples ?? []).map(pick);
  const latest = [...values].reverse().find((v) => v !== undefined);
  if (latest === undefined) return seg(unavailable === undefined ? "no data" : "n/a", { dim: true });
  const label = `${Math.round(latest)}%`.padStart(4);
  const spark = sparkline(values, Math.max(0, width - label.length - 1), { min: 0, max: 100 });
  return seg(`${spark} ${label}`, { color: loadColor(latest) });
}

/**
 * Memory in use as a share of the node's memory; where the node's size is unknown, the MiB in use, from
 * 0 to the most the sparkline shows.
 */
export function memoryCell(
  node: NodeView,
  samples: readonly LoadSample[] | undefined,
  width: number,
  unavailable: string | undefined,
): Segment {
  const percent = (sample: LoadSample) =>
    sample.memoryPercent ??
    (sample.memoryUsedMb !== undefined && node.memoryMb > 0
      ? Math.min(100, (sample.memoryUsedMb / node.memoryMb) * 100)
      : undefined);
  const list = samples ?? [];
  if (list.some((sample) => percent(sample) !== undefined))
    return loadCell(list, percent, width, unavailable);
  const used = list.map((sample) => sample.memoryUsedMb);
  const latest = [...used].reverse().find((v) => v !== undefined);
  if (latest === undefined) return seg(unavailable === undefined ? "no data" : "n/a", { dim: true });
  const label = formatMb(latest).padStart(5);
  const max = Math.max(...used.map((v) => v ?? 0));
  return seg(`${sparkline(used, Math.max(0, width - label.length - 1), { min: 0, max })} ${label}`, {
    color: "blue",
  });
}

// ---------------------------------------------------------------- the tabs

/** As wide as the longest of `texts` (between `min` and `max`), so that spare room goes to other columns. */
function widthFor(texts: Iterable<string>, min: number, max: number): number {
  let widest = 0;
  for (const text of texts) widest = Math.max(widest, textWidth(text));
  return Math.max(min, Math.min(max, widest));
}

function nodeColumns(state: TuiState): Column<NodeView>[] {
  const loads = (node: NodeView) => state.loads.get(node.id);
  const nameMax = widthFor(
    [...state.nodes.values()].map((n) => n.name),
    10,
    24,
  );
  return [
    {
      title: "NAME",
      min: 10,
      max: nameMax,
      want: nameMax,
      priority: 0,
      cell: (n) => seg(n.name, { bold: true }),
    },
    { title: "STATUS", min: 7, priority: 0, cell: (n) => seg(n.status, statusStyle(n.status)) },
    {
      title: "ROLE",
      min: 10,
      priority: 6,
      cell: (n) => seg(n.role || "-", { dim: n.role !== "controller" }),
    },
    { title: "ADDRESS", min: 15, max: 21, priority: 4, cell: (n) => seg(n.address || "-") },
    {
      title: "CORES",
      min: 5,
      priority: 5,
      align: "right",
      cell: (n) => seg(n.cpuCores > 0 ? String(n.cpuCores) : "-"),
    },
    {
      title: "MEMORY",
      min: 6,
      priority: 5,
      align: "right",
      cell: (n) => seg(n.memoryMb > 0 ? formatMb(n.memoryMb) : "-"),
    },
    {
      title: "GPUS",
      min: 4,
      priority: 7,
      align: "right",
      cell: (n) => seg(n.gpus.length > 0 ? String(n.gpus.length) : "-", { dim: n.gpus.length === 0 }),
    },
    {
      title: "LAYERS",
      min: 7,
      priority: 3,
      align: "right",
      cell: (n) => seg(n.maxLayers > 0 ? `${n.usedLayers}/${n.maxLayers}` : "-", { dim: n.maxLayers === 0 }),
    },
    {
      title: "CPU",
      min: 12,
      max: 26,
      priority: 1,
      cell: (n, w) => loadCell(loads(n), (s) => s.cpuPercent, w, state.loadsUnavailable),
    },
    {
      title: "MEM",
      min: 12,
      max: 26,
      priority: 2,
      cell: (n, w) => memoryCell(n, loads(n), w, state.loadsUnavailable),
    },
  ];
}

function layersText(model: ModelView): string {
  return model.placedLayers === undefined
    ? String(model.layerCount)
    : `${model.placedLayers}/${model.layerCount}`;
}

function modelColumns(state: TuiState): Column<ModelView>[] {
  const nameMax = widthFor(
    [...state.models.values()].map((m) => m.name),
    8,
    28,
  );
  return [
    {
      title: "NAME",
      min: 8,
      max: nameMax,
      want: nameMax,
      priority: 0,
      cell: (m) => seg(m.name, { bold: true }),
    },
    { title: "VERSION", min: 7, max: 12, priority: 3, cell: (m) => seg(m.version || "-") },
    { title: "STATE", min: 10, priority: 0, cell: (m) => seg(m.state, placementStyle(m.state)) },
    { title: "LAYERS", min: 9, priority: 1, align: "right", cell: (m) => seg(layersText(m)) },
    { title: "SIZE", min: 7, priority: 4, align: "right", cell: (m) => seg(formatBytes(m.sizeBytes)) },
    {
      title: "PLACEMENT",
      min: 10,
      max: 200,
      priority: 2,
      cell: (m) => seg(rangesText(m) || m.message || "-", { dim: m.assignments.length === 0 }),
    },
  ];
}

function requestColumns(state: TuiState, now: number): Column<RequestView>[] {
  const nameMax = widthFor(
    [...state.requests.values()].map((r) => r.name || r.nodeId),
    8,
    24,
  );
  return [
    { title: "ID", min: 4, priority: 0, align: "right", cell: (r) => seg(`#${r.id}`) },
    {
      title: "NAME",
      min: 8,
      max: nameMax,
      want: nameMax,
      priority: 0,
      cell: (r) => seg(r.name || r.nodeId || "-", { bold: true }),
    },
    {
      title: "STATE",
      min: 8,
      priority: 0,
      cell: (r) => {
        const state = requestState(r, now);
        return seg(state, requestStyle(state));
      },
    },
    { title: "SOURCE", min: 9, max: 21, priority: 2, cell: (r) => seg(r.sourceAddress || "-") },
    {
      title: "KEY",
      min: 12,
      max: 25,
      priority: 3,
      cell: (r) => seg(shortFingerprint(r.fingerprint), { dim: true }),
    },
    { title: "METADATA", min: 8, max: 60, priority: 4, cell: (r) => seg(r.metadata) },
    {
      title: "AGE",
      min: 5,
      priority: 5,
      align: "right",
      cell: (r) => seg(r.createdAt === undefined ? "-" : formatSpan(now - r.createdAt)),
    },
    {
      title: "EXPIRES",
      min: 7,
      priority: 1,
      align: "right",
      cell: (r) =>
        seg(
          requestState(r, now) !== "pending" || r.expiresAt === undefined
            ? "-"
            : formatSpan(r.expiresAt - now),
          { dim: requestState(r, now) !== "pending" },
        ),
    },
  ];
}

function logColumns(): Column<LogEntry>[] {
  return [
    { title: "TIME", min: 8, priority: 0, cell: (e) => seg(clockTime(e.at), { dim: true }) },
    { title: "EVENT", min: 10, max: 1000, priority: 0, cell: (e) => seg(e.text, levelStyle(e.level)) },
  ];
}

// ---------------------------------------------------------------- detail line

function nodeDetail(state: TuiState, node: NodeView): Line {
  const parts = [
    node.name,
    `id ${node.id}`,
    node.role || "role ?",
    node.version ? `v${node.version}` : "",
    node.gpus.length > 0
      ? `GPUs ${node.gpus.map((gpu) => `${gpu.name}${gpu.memoryMb > 0 ? ` ${formatMb(gpu.memoryMb)}` : ""}`).join(", ")}`
      : "",
    Object.keys(node.labels).length > 0
      ? `labels ${Object.entries(node.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")}`
      : "",
  ];
  const latest = state.loads.get(node.id)?.at(-1);
  if (latest?.memoryUsedMb !== undefined)
    parts.push(`memory used ${formatMb(latest.memoryUsedMb)} of ${formatMb(node.memoryMb)}`);
  return [seg(parts.filter((p) => p !== "").join(" · "), { dim: true })];
}

function modelDetail(model: ModelView): Line {
  const parts = [
    `${model.name} ${model.version}`.trim(),
    `id ${model.id}`,
    model.message,
    model.assignments.length > 0 ? `layers on ${rangesText(model)}` : "",
  ];
  return [seg(parts.filter((p) => p !== "").join(" · "), { dim: true })];
}

function requestDetail(request: RequestView, now: number): Line {
  const state = requestState(request, now);
  const parts = [
    `#${request.id} ${request.name}`,
    request.nodeId ? `node id ${request.nodeId}` : "",
    request.address ? `agent at ${request.address}` : "",
    `key ${request.fingerprint || "-"}`,
    state === "pending" ? "" : `${state}${request.decidedBy ? ` by ${request.decidedBy}` : ""}`,
    request.reason ? `reason: ${request.reason}` : "",
  ];
  const line: Segment[] = [seg(parts.filter((p) => p !== "").join(" · "), { dim: true })];
  if (state === "pending") line.unshift(seg("a accept · r reject  ", { color: "cyan" }));
  return line;
}

function logDetail(entry: LogEntry): Line {
  return [seg(`${new Date(entry.at).toISOString()}  ${entry.text}`, { dim: true })];
}

// ---------------------------------------------------------------- header and footer

function titleLine(state: TuiState, now: number): Line {
  const { connection } = state;
  const left: Segment[] = [seg(" corral ", { inverse: true, bold: true }), seg(" ")];
  if (connection.state === "connected") left.push(seg("● connected", { color: "green" }));
  else if (connection.state === "connecting") left.push(seg("◌ connecting…", { color: "yellow" }));
  else {
    const wait =
      connection.retryAt !== undefined && connection.retryAt > now
        ? `next try in ${formatSpan(connection.retryAt - now + 999)}`
        : "trying now";
    left.push(
      seg("✖ disconnected, retrying…", { color: "red", bold: true }),
      seg(` (${wait}${connection.error ? `; ${sanitize(connection.error)}` : ""})`, { color: "red" }),
    );
  }
  left.push(seg(` · ${connection.server}`, { dim: true }));
  if (state.controllerName) left.push(seg(` · ${state.controllerName}`));
  if (state.clusterId) left.push(seg(` · cluster ${state.clusterId.slice(0, 12)}`, { dim: true }));
  return spread(left, [seg(clockTime(now), { dim: true })], state.columns);
}

function totalsLine(state: TuiState): Line {
  const totals = clusterTotals(state);
  const counts = statusCounts(state);
  const parts: Segment[] = [seg(`nodes ${totals.totalNodes}`, { bold: true })];
  const shown: NodeStatusName[] = ["ready", "suspect", "down", "pending"];
  const statusParts = shown
    .filter((status) => counts[status] > 0)
    .map((status) => seg(`${counts[status]} ${status}`, statusStyle(status)));
  if (statusParts.length > 0) {
    parts.push(seg(" ("));
    statusParts.forEach((part, i) => {
      if (i > 0) parts.push(seg(" · "));
      parts.push(part);
    });
    parts.push(seg(")"));
  }
  const divider = seg(" │ ", { dim: true });
  parts.push(
    divider,
    seg(`memory ${formatMb(totals.availableMemoryMb)}/${formatMb(totals.totalMemoryMb)} ready`),
    divider,
    seg(`GPUs ${totals.totalGpus}`),
    divider,
    seg(`layers ${totals.allocatedLayers}/${totals.totalLayers} (${Math.round(totals.utilization * 100)}%)`),
  );
  return clip(parts, state.columns);
}

function tabCount(state: TuiState, tab: Tab, now: number): Segment {
  switch (tab) {
    case "nodes":
      return seg(String(state.nodes.size));
    case "models":
      return seg(String(state.models.size));
    case "requests": {
      const pending = [...state.requests.values()].filter((r) => requestState(r, now) === "pending").length;
      return seg(String(pending), pending > 0 ? { color: "cyan", bold: true } : {});
    }
    case "events":
      return seg(String(state.log.length));
  }
}

function tabLine(state: TuiState, now: number): Line {
  const parts: Segment[] = [];
  tabs.forEach((tab, i) => {
    const active = tab === state.tab;
    const count = tabCount(state, tab, now);
    parts.push(
      seg(` ${i + 1} ${tabTitles[tab]} `, active ? { inverse: true, bold: true } : {}),
      { ...count, text: `(${count.text})`, ...(active ? { bold: true } : {}) },
      seg("  "),
    );
  });
  const filter = state.views[state.tab].filter;
  if (filter !== "" && !state.editingFilter)
    parts.push(seg(`filter /${sanitize(filter)}`, { color: "magenta" }));
  return clip(parts, state.columns);
}

function footerLine(state: TuiState, now: number): Line {
  if (state.editingFilter) {
    return clip(
      [
        seg("/", { color: "magenta", bold: true }),
        seg(sanitize(state.views[state.tab].filter)),
        seg("▏", { color: "magenta" }),
        seg("   Enter keeps the filter · Esc clears it", { dim: true }),
      ],
      state.columns,
    );
  }
  if (state.notice !== undefined && now - state.notice.at < noticeMs) {
    return clip(
      [seg(sanitize(state.notice.text), { ...levelStyle(state.notice.level), bold: true })],
      state.columns,
    );
  }
  const parts: Segment[] = [];
  keyHelp.forEach(([key, what], i) => {
    if (i > 0) parts.push(seg(" · ", { dim: true }));
    parts.push(seg(key, { bold: true }), seg(` ${what}`, { dim: true }));
  });
  return clip(parts, state.columns);
}

// ---------------------------------------------------------------- the screen

interface Body {
  readonly heading: Line;
  readonly rows: Line[];
  readonly detail: Line;
}

function table<T>(
  state: TuiState,
  columns: readonly Column<T>[],
  items: readonly T[],
  keyOf: (item: T) => string,
  empty: string,
  detail: (item: T) => Line,
): Body {
  const layout = layoutColumns(columns, state.columns);
  const height = listHeight(state.rows);
  const keys = items.map(keyOf);
  const index = selectedIndex(state, state.tab, keys);
  const first = scrollWindow(state.views[state.tab].offset, index, items.length, height);
  const rows = items
    .slice(first, first + height)
    .map((item, i) => tableRow(layout, item, first + i === index));
  if (items.length === 0) {
    const filter = state.views[state.tab].filter;
    rows.push([seg(`  ${filter === "" ? empty : `nothing matches /${sanitize(filter)}`}`, { dim: true })]);
  }
  const selected = items[index];
  const more = items.length > height ? seg(` ${index + 1}/${items.length} `, { dim: true }) : seg("");
  return {
    heading: heading(layout),
    rows,
    detail: selected === undefined ? [more] : spread(detail(selected), [more], state.columns),
  };
}

function body(state: TuiState, now: number): Body {
  switch (state.tab) {
    case "nodes":
      return table(
        state,
        nodeColumns(state),
        visibleNodes(state),
        (n) => n.id,
        state.nodesSynced ? "no nodes" : "loading nodes…",
        (n) => nodeDetail(state, n),
      );
    case "models":
      return table(
        state,
        modelColumns(state),
        visibleModels(state),
        (m) => m.id,
        state.modelsSource === "none"
          ? "models are not available from this controller"
          : state.modelsSynced
            ? "no models (corral models add …)"
            : "loading models…",
        modelDetail,
      );
    case "requests":
      return table(
        state,
        requestColumns(state, now),
        visibleRequests(state, now),
        (r) => r.id,
        "no join requests",
        (r) => requestDetail(r, now),
      );
    case "events":
      return table(state, logColumns(), visibleLog(state), (e) => String(e.seq), "nothing yet", logDetail);
  }
}

export function renderScreen(state: TuiState, now: number): Line[] {
  const total = Math.max(1, state.rows - 1);
  if (state.columns < minColumns || state.rows < minRows) {
    const lines: Line[] = [
      clip([seg(`corral tui: the terminal is too small (at least ${minColumns}×${minRows})`)], state.columns),
    ];
    while (lines.length < total) lines.push([]);
    return lines.slice(0, total);
  }
  const { heading: head, rows, detail } = body(state, now);
  const height = listHeight(state.rows);
  const list = rows.slice(0, height);
  while (list.length < height) list.push([]);
  const lines = [
    titleLine(state, now),
    totalsLine(state),
    tabLine(state, now),
    head,
    ...list,
    clip(detail, state.columns),
    footerLine(state, now),
  ];
  return lines.map((line) => clip(line, state.columns));
}

/** The screen as plain text (for tests and logs). */
export function screenText(lines: readonly Line[]): string {
  return lines
    .map((line) =>
      line
        .map((segment) => segment.text)
        .join("")
        .trimEnd(),
    )
    .join("\n");
}
