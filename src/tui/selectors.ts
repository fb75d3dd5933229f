import type {
  ClusterTotalsView,
  LogEntry,
  ModelView,
  NodeView,
  RequestStateName,
  RequestView,
  Tab,
  TuiState,
} from "./model.ts";

/** Lines above the list (title, totals, tab bar, column headings) and below it (detail, footer). */
export const chromeLines = 6;

/**
 * Rows of the list on a terminal `rows` high. The screen is one line shorter than the terminal: a frame
 * as high as the terminal would make Ink clear and redraw the whole screen on every update.
 */
export function listHeight(rows: number): number {
  return Math.max(1, rows - 1 - chromeLines);
}

const byName = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

/** A request still marked pending after its deadline has expired, as far as the user can tell. */
export function requestState(request: RequestView, now: number): RequestStateName {
  return request.state === "pending" && request.expiresAt !== undefined && request.expiresAt <= now
    ? "expired"
    : request.state;
}

const matches = (filter: string, ...fields: readonly string[]): boolean => {
  const needle = filter.trim().toLowerCase();
  return needle === "" || fields.some((field) => field.toLowerCase().includes(needle));
};

export function visibleNodes(state: TuiState): NodeView[] {
  const { filter } = state.views.nodes;
  return [...state.nodes.values()]
    .filter((node) =>
      matches(
        filter,
        node.name,
        node.id,
        node.status,
        node.role,
        node.address,
        node.version,
        ...Object.entries(node.labels).map(([k, v]) => `${k}=${v}`),
        ...node.gpus.map((gpu) => gpu.name),
      ),
    )
    .sort((a, b) => byName.compare(a.name, b.name) || (a.id < b.id ? -1 : 1));
}

export function visibleModels(state: TuiState): ModelView[] {
  const { filter } = state.views.models;
  return [...state.models.values()]
    .filter((model) =>
      matches(
        filter,
        model.name,
        model.id,
        model.version,
        model.state,
        model.message,
        ...model.assignments.map((range) => range.node),
      ),
    )
    .sort((a, b) => byName.compare(a.name, b.name) || byName.compare(a.version, b.version));
}

/** Pending requests first, oldest first; then decided ones, newest first. */
export function visibleRequests(state: TuiState, now: number): RequestView[] {
  const { filter } = state.views.requests;
  const number = (request: RequestView) => BigInt(/^\d+$/.test(request.id) ? request.id : "0");
  return [...state.requests.values()]
    .filter((request) =>
      matches(
        filter,
        `#${request.id}`,
        request.name,
        request.nodeId,
        request.sourceAddress,
        request.fingerprint,
        request.metadata,
        requestState(request, now),
      ),
    )
    .sort((a, b) => {
      const pa = requestState(a, now) === "pending";
      const pb = requestState(b, now) === "pending";
      if (pa !== pb) return pa ? -1 : 1;
      const order = number(a) < number(b) ? -1 : number(a) > number(b) ? 1 : 0;
      return pa ? order : -order;
    });
}

export function visibleLog(state: TuiState): LogEntry[] {
  const { filter } = state.views.events;
  return state.log.filter((entry) => matches(filter, entry.text, entry.level));
}

/** The selection keys of a tab's rows, in the order shown. */
export function rowKeys(state: TuiState, tab: Tab, now: number): string[] {
  switch (tab) {
    case "nodes":
      return visibleNodes(state).map((node) => node.id);
    case "models":
      return visibleModels(state).map((model) => model.id);
    case "requests":
      return visibleRequests(state, now).map((request) => request.id);
    case "events":
      return visibleLog(state).map((entry) => String(entry.seq));
  }
}

/** Where the selection is among `keys`: the selected key's place, else the first row (Events: the last). */
export function selectedIndex(state: TuiState, tab: Tab, keys: readonly string[]): number {
  if (keys.length === 0) return -1;
  const selected = state.views[tab].selected;
  const at = selected === undefined ? -1 : keys.indexOf(selected);
  if (at >= 0) return at;
  if (tab === "events" && selected !== undefined) {
    // The selected line scrolled out of the log (or the filter): the nearest newer line.
    const seq = Number(selected);
    const next = keys.findIndex((key) => Number(key) >= seq);
    return next >= 0 ? next : keys.length - 1;
  }
  return tab === "events" ? keys.length - 1 : 0;
}

/** The first row to show so that row `index` of `count` is in a window of `height` rows. */
export function scrollWindow(offset: number, index: number, count: number, height: number): number {
  let first = Math.min(offset, Math.max(0, count - height));
  if (index >= 0 && index < first) first = index;
  if (index >= first + height) first = index - height + 1;
  return Math.max(0, first);
}

/** The controller's totals, or the same figures computed from the nodes when it sends none. */
export function clusterTotals(state: TuiState): ClusterTotalsView {
  if (state.totals !== undefined) return state.totals;
  const members = [...state.nodes.values()].filter((node) => node.status !== "left");
  const ready = members.filter((node) => node.status === "ready");
  const sum = (list: readonly NodeView[], pick: (node: NodeView) => number) =>
    list.reduce((total, node) => total + pick(node), 0);
  const totalLayers = sum(members, (node) => node.maxLayers);
  const allocatedLayers = sum(members, (node) => node.usedLayers);
  return {
    totalNodes: members.length,
    healthyNodes: ready.length,
    totalMemoryMb: sum(members, (node) => node.memoryMb),
    availableMemoryMb: sum(ready, (node) => node.memoryMb),
    totalGpus: sum(members, (node) => node.gpus.length),
    totalLayers,
    allocatedLayers,
    utilization: totalLayers === 0 ? 0 : allocatedLayers / totalLayers,
  };
}

/** Nodes by status, for the header. */
export function statusCounts(state: TuiState): Record<NodeView["status"], number> {
  const counts = { pending: 0, ready: 0, suspect: 0, down: 0, left: 0, unknown: 0 };
  for (const node of state.nodes.values()) counts[node.status]++;
  return counts;
}
