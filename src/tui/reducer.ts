import {
  type Action,
  type Level,
  type LoadSample,
  type LogEntry,
  loadHistory,
  logLimit,
  type ModelView,
  type NodeStatusName,
  type NodeView,
  type RequestView,
  type TuiState,
} from "./model.ts";

/** The colour of a line about a node in this status. */
export function levelOfStatus(status: NodeStatusName): Level {
  switch (status) {
    case "ready":
      return "good";
    case "suspect":
      return "warn";
    case "down":
      return "bad";
    default:
      return "info";
  }
}

function levelOfPlacement(state: ModelView["state"]): Level {
  switch (state) {
    case "placed":
    case "assigned":
      return "good";
    case "partial":
      return "warn";
    case "unplaced":
      return "bad";
    default:
      return "info";
  }
}

/** Appends lines to the Events log (keeping the newest `logLimit`). */
export function withLog(
  state: TuiState,
  at: number,
  lines: readonly { level: Level; text: string }[],
): TuiState {
  if (lines.length === 0) return state;
  let seq = state.nextSeq;
  const added: LogEntry[] = lines.map((line) => ({ seq: seq++, at, level: line.level, text: line.text }));
  const log = [...state.log, ...added];
  return { ...state, log: log.length > logLimit ? log.slice(log.length - logLimit) : log, nextSeq: seq };
}

type Line = { level: Level; text: string };

/** What is worth a line in the log when a node changes: arrival, status, name, departure. */
function nodeChange(before: NodeView | undefined, after: NodeView | undefined): Line[] {
  if (before === undefined && after !== undefined)
    return [{ level: levelOfStatus(after.status), text: `node ${after.name} joined (${after.status})` }];
  if (before !== undefined && after === undefined)
    return [{ level: "warn", text: `node ${before.name} was removed` }];
  if (before === undefined || after === undefined) return [];
  const lines: Line[] = [];
  if (before.name !== after.name)
    lines.push({ level: "info", text: `node ${before.name} is now called ${after.name}` });
  if (before.status !== after.status)
    lines.push({
      level: levelOfStatus(after.status),
      text: `node ${after.name}: ${before.status} → ${after.status}`,
    });
  return lines;
}

/** `agent-1 0–39, agent-2 40–79` */
export function rangesText(model: ModelView): string {
  return model.assignments
    .map((range) =>
      range.count <= 0 ? range.node : `${range.node} ${range.start}–${range.start + range.count - 1}`,
    )
    .join(", ");
}

function modelChange(before: ModelView | undefined, after: ModelView | undefined): Line[] {
  if (before === undefined && after !== undefined)
    return [{ level: "info", text: `model ${after.name} ${after.version} added (${after.state})` }];
  if (before !== undefined && after === undefined)
    return [{ level: "warn", text: `model ${before.name} ${before.version} was removed` }];
  if (before === undefined || after === undefined) return [];
  const lines: Line[] = [];
  if (before.state !== after.state) {
    lines.push({
      level: levelOfPlacement(after.state),
      text: `model ${after.name}: ${before.state} → ${after.state}${after.message ? ` (${after.message})` : ""}`,
    });
  } else if (rangesText(before) !== rangesText(after)) {
    lines.push({
      level: "info",
      text: `model ${after.name} re-placed: ${rangesText(after) || "no layers placed"}`,
    });
  }
  return lines;
}

const decided = (request: RequestView | undefined) => request !== undefined && request.state !== "pending";

function requestChange(before: RequestView | undefined, after: RequestView): Line[] {
  const who = `#${after.id} ${after.name || after.nodeId || "(no name)"}`;
  if (before === undefined) {
    return after.state === "pending"
      ? [{ level: "info", text: `join request ${who} from ${after.sourceAddress || "?"} is waiting` }]
      : [];
  }
  if (before.state === after.state) return [];
  const by = after.decidedBy ? ` by ${after.decidedBy}` : "";
  const reason = after.reason ? `: ${after.reason}` : "";
  const level: Level = after.state === "accepted" ? "good" : after.state === "rejected" ? "bad" : "warn";
  return [{ level, text: `join request ${who} ${after.state}${by}${reason}` }];
}

/** A decision never goes back to pending: a listing older than the watch's news does not undo it. */
function mergeRequest(before: RequestView | undefined, incoming: RequestView): RequestView {
  return decided(before) && incoming.state === "pending" && before !== undefined ? before : incoming;
}

/** Swaps in a full listing; after the first one, differences from what was shown are logged. */
function replaceAll<T extends { id: string }>(
  before: ReadonlyMap<string, T>,
  after: ReadonlyMap<string, T>,
  change: (a: T | undefined, b: T | undefined) => Line[],
): Line[] {
  const lines: Line[] = [];
  for (const [id, item] of after) lines.push(...change(before.get(id), item));
  for (const [id, item] of before) if (!after.has(id)) lines.push(...change(item, undefined));
  return lines;
}

function pruneLoads(
  loads: ReadonlyMap<string, readonly LoadSample[]>,
  nodes: ReadonlyMap<string, NodeView>,
): ReadonlyMap<string, readonly LoadSample[]> {
  if ([...loads.keys()].every((id) => nodes.has(id))) return loads;
  return new Map([...loads].filter(([id]) => nodes.has(id)));
}

export function reduce(state: TuiState, action: Action): TuiState {
  switch (action.type) {
    case "connection": {
      const before = state.connection.state;
      const connection = {
        ...state.connection,
        state: action.state,
        error: action.state === "connected" ? undefined : (action.error ?? state.connection.error),
        retryAt:
          action.state === "disconnected" && action.retryInMs !== undefined
            ? action.at + action.retryInMs
            : undefined,
      };
      const next = { ...state, connection };
      if (action.state === "connected" && before !== "connected")
        return withLog(next, action.at, [{ level: "good", text: `connected to ${state.connection.server}` }]);
      if (action.state === "disconnected" && before === "connected")
        return withLog(next, action.at, [
          { level: "bad", text: `lost the controller${action.error ? `: ${action.error}` : ""}` },
        ]);
      return next;
    }

    case "cluster": {
      const next = { ...state, clusterId: action.clusterId, controllerName: action.controllerName };
      return state.clusterId !== undefined && state.clusterId !== action.clusterId
        ? withLog(next, Date.now(), [
            { level: "warn", text: `a different cluster answers now (${action.clusterId})` },
          ])
        : next;
    }

    case "nodes-watch":
      return { ...state, nodeSnapshot: undefined };

    case "node": {
      if (action.event === "snapshot") {
        if (action.node === undefined) return state;
        const snapshot = new Map(state.nodeSnapshot ?? []);
        snapshot.set(action.node.id, action.node);
        return { ...state, nodeSnapshot: snapshot };
      }
      if (action.event === "synced") {
        const nodes = state.nodeSnapshot ?? new Map<string, NodeView>();
        const lines = state.nodesSynced
          ? replaceAll(state.nodes, nodes, nodeChange)
          : [{ level: "info" as const, text: `${nodes.size} node${nodes.size === 1 ? "" : "s"} listed` }];
        return withLog(
          {
            ...state,
            nodes,
            nodeSnapshot: undefined,
            nodesSynced: true,
            nodesRevision: action.revision,
            loads: pruneLoads(state.loads, nodes),
          },
          action.at,
          lines,
        );
      }
      if (action.node === undefined) return { ...state, nodesRevision: action.revision };
      const nodes = new Map(state.nodes);
      const known = nodes.get(action.node.id);
      const before = known ?? (action.event === "deleted" ? action.node : undefined);
      let loads = state.loads;
      if (action.event === "put") nodes.set(action.node.id, action.node);
      else {
        nodes.delete(action.node.id);
        loads = pruneLoads(loads, nodes);
      }
      return withLog(
        { ...state, nodes, loads, nodesRevision: Math.max(state.nodesRevision, action.revision) },
        action.at,
        nodeChange(before, action.event === "put" ? action.node : undefined),
      );
    }

    case "models-watch":
      return { ...state, modelSnapshot: undefined, modelsSource: "watch" };

    case "model": {
      if (action.event === "snapshot") {
        if (action.model === undefined) return state;
        const snapshot = new Map(state.modelSnapshot ?? []);
        snapshot.set(action.model.id, action.model);
        return { ...state, modelSnapshot: snapshot };
      }
      if (action.event === "synced") {
        const models = state.modelSnapshot ?? new Map<string, ModelView>();
        return withLog(
          {
            ...state,
            models,
            modelSnapshot: undefined,
            modelsSynced: true,
            modelsRevision: action.revision,
          },
          action.at,
          state.modelsSynced ? replaceAll(state.models, models, modelChange) : [],
        );
      }
      if (action.model === undefined) return { ...state, modelsRevision: action.revision };
      const models = new Map(state.models);
      const before = models.get(action.model.id) ?? (action.event === "deleted" ? action.model : undefined);
      if (action.event === "put") models.set(action.model.id, action.model);
      else models.delete(action.model.id);
      return withLog(
        { ...state, models, modelsRevision: Math.max(state.modelsRevision, action.revision) },
        action.at,
        modelChange(before, action.event === "put" ? action.model : undefined),
      );
    }

    case "models-replace": {
      const models = new Map(action.models.map((model) => [model.id, model]));
      return withLog(
        { ...state, models, modelsSynced: true },
        action.at,
        state.modelsSynced ? replaceAll(state.models, models, modelChange) : [],
      );
    }

    case "models-source": {
      if (state.modelsSource === action.source) return state;
      const text =
        action.source === "updates"
          ? "models: the native models API is not served here; following Distributed LLM StreamUpdates"
          : action.source === "none"
            ? `models: not available${action.why ? ` (${action.why})` : ""}`
            : "models: following the native models watch";
      return withLog({ ...state, modelsSource: action.source }, action.at, [{ level: "warn", text }]);
    }

    case "request": {
      const requests = new Map(state.requests);
      const before = requests.get(action.request.id);
      const merged = mergeRequest(before, action.request);
      requests.set(merged.id, merged);
      return withLog({ ...state, requests }, action.at, requestChange(before, merged));
    }

    case "requests-list": {
      const requests = new Map(state.requests);
      const lines: Line[] = [];
      for (const request of action.requests) {
        const before = requests.get(request.id);
        const merged = mergeRequest(before, request);
        requests.set(merged.id, merged);
        lines.push(...requestChange(before, merged));
      }
      return withLog({ ...state, requests }, action.at, lines);
    }

    case "totals":
      return { ...state, totals: action.totals };

    case "load": {
      const history = state.loads.get(action.nodeId) ?? [];
      const last = history[history.length - 1];
      // The same reading polled twice (the node reports with its heartbeat) counts once.
      const kept = last !== undefined && last.at === action.sample.at ? history.slice(0, -1) : history;
      const next = [...kept, action.sample];
      const loads = new Map(state.loads);
      loads.set(action.nodeId, next.length > loadHistory ? next.slice(next.length - loadHistory) : next);
      return { ...state, loads };
    }

    case "loads-unavailable":
      return state.loadsUnavailable === action.why
        ? state
        : withLog({ ...state, loadsUnavailable: action.why }, action.at, [
            { level: "warn", text: `per-node load: ${action.why}` },
          ]);

    case "log":
      return withLog(state, action.at, [{ level: action.level, text: action.text }]);

    case "notice":
      return withLog(
        { ...state, notice: { at: action.at, level: action.level, text: action.text } },
        action.at,
        [{ level: action.level, text: action.text }],
      );

    case "resize":
      return { ...state, columns: Math.max(1, action.columns), rows: Math.max(1, action.rows) };
  }
}
