/**
 * The terminal UI's view state and the actions that change it. Everything here is plain data (no
 * protobuf messages, no clocks): the feeds turn stream events into actions (convert.ts), the reducer
 * (reducer.ts) and the key handler (keys.ts) are pure functions of state and action, and the screen
 * (screen.ts) is a pure function of state and the time.
 */

export const tabs = ["nodes", "models", "requests", "events"] as const;
export type Tab = (typeof tabs)[number];

export const tabTitles: Readonly<Record<Tab, string>> = {
  nodes: "Nodes",
  models: "Models",
  requests: "Requests",
  events: "Events",
};

export type NodeStatusName = "pending" | "ready" | "suspect" | "down" | "left" | "unknown";

export interface NodeView {
  readonly id: string;
  readonly name: string;
  /** "controller", "agent" or "". */
  readonly role: string;
  readonly status: NodeStatusName;
  /** host:port, or "" when the node cannot be dialed. */
  readonly address: string;
  readonly cpuCores: number;
  readonly memoryMb: number;
  readonly gpus: readonly { readonly name: string; readonly memoryMb: number }[];
  readonly maxLayers: number;
  readonly usedLayers: number;
  readonly version: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** `assigned`: placed somewhere, as far as an API without placement states (GetModelList) can tell. */
export type PlacementName = "unassigned" | "placed" | "partial" | "unplaced" | "assigned" | "unknown";

export interface LayerRangeView {
  readonly node: string;
  readonly start: number;
  readonly count: number;
}

export interface ModelView {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly layerCount: number;
  /** Undefined when the source does not say (the Distributed LLM model list). */
  readonly placedLayers: number | undefined;
  readonly sizeBytes: number;
  readonly state: PlacementName;
  readonly message: string;
  readonly assignments: readonly LayerRangeView[];
}

export type RequestStateName = "pending" | "accepted" | "rejected" | "expired" | "unknown";

export interface RequestView {
  /** The request's number, in decimal (a uint64 on the wire). */
  readonly id: string;
  readonly name: string;
  readonly nodeId: string;
  readonly sourceAddress: string;
  readonly address: string;
  readonly fingerprint: string;
  /** The metadata as `k=v,…` ("-" when none). */
  readonly metadata: string;
  readonly state: RequestStateName;
  /** ms since the epoch. */
  readonly createdAt: number | undefined;
  readonly expiresAt: number | undefined;
  readonly decidedBy: string;
  readonly reason: string;
}

/** Distributed LLM's ClusterMetrics. */
export interface ClusterTotalsView {
  readonly totalNodes: number;
  readonly healthyNodes: number;
  readonly totalMemoryMb: number;
  readonly availableMemoryMb: number;
  readonly totalGpus: number;
  readonly totalLayers: number;
  readonly allocatedLayers: number;
  /** allocated / total layers, 0…1. */
  readonly utilization: number;
}

/** One load reading of a node; a figure the node has not reported is undefined. */
export interface LoadSample {
  /** ms since the epoch: when the node measured it. */
  readonly at: number;
  readonly cpuPercent: number | undefined;
  readonly memoryPercent: number | undefined;
  readonly memoryUsedMb: number | undefined;
}

export type Level = "info" | "good" | "warn" | "bad";

export interface LogEntry {
  /** Increasing; the Events tab's selection key. */
  readonly seq: number;
  readonly at: number;
  readonly level: Level;
  readonly text: string;
}

export interface ConnectionView {
  readonly state: "connecting" | "connected" | "disconnected";
  /** host:port dialed. */
  readonly server: string;
  /** What the last failure said. */
  readonly error: string | undefined;
  /** When the next attempt starts (ms since the epoch), while disconnected. */
  readonly retryAt: number | undefined;
}

export interface TabView {
  /** Key of the selected row (node id, model id, request id, log seq); undefined: the first row (Events: follow the newest). */
  readonly selected: string | undefined;
  /** First row shown. */
  readonly offset: number;
  readonly filter: string;
}

export interface Notice {
  readonly at: number;
  readonly level: Level;
  readonly text: string;
}

export interface TuiState {
  readonly connection: ConnectionView;
  readonly clusterId: string | undefined;
  readonly controllerName: string | undefined;

  readonly nodes: ReadonlyMap<string, NodeView>;
  /** The last revision of the node watch applied: a reconnect resumes from the next one. */
  readonly nodesRevision: number;
  /** The listing SYNCED: until then the Nodes tab says it is loading. */
  readonly nodesSynced: boolean;
  /** Nodes of a SNAPSHOT being received, swapped in on SYNCED. */
  readonly nodeSnapshot: ReadonlyMap<string, NodeView> | undefined;

  readonly models: ReadonlyMap<string, ModelView>;
  readonly modelsRevision: number;
  readonly modelsSynced: boolean;
  readonly modelSnapshot: ReadonlyMap<string, ModelView> | undefined;
  /** Where models come from: the native watch, Distributed LLM's StreamUpdates, or nowhere (with why). */
  readonly modelsSource: "watch" | "updates" | "none";

  readonly requests: ReadonlyMap<string, RequestView>;

  /** Cluster totals from the controller; undefined: computed here from the nodes. */
  readonly totals: ClusterTotalsView | undefined;
  /** Recent load readings per node id, oldest first. */
  readonly loads: ReadonlyMap<string, readonly LoadSample[]>;
  /** Set when per-node metrics cannot be had (the reason). */
  readonly loadsUnavailable: string | undefined;

  readonly log: readonly LogEntry[];
  readonly nextSeq: number;

  readonly tab: Tab;
  readonly views: Readonly<Record<Tab, TabView>>;
  /** `/` was pressed: keys type into the current tab's filter. */
  readonly editingFilter: boolean;
  readonly notice: Notice | undefined;
  readonly columns: number;
  readonly rows: number;
}

export type NodeEventKind = "snapshot" | "synced" | "put" | "deleted";

export type Action =
  | {
      readonly type: "connection";
      readonly at: number;
      readonly state: ConnectionView["state"];
      readonly error?: string;
      readonly retryInMs?: number;
    }
  | { readonly type: "cluster"; readonly clusterId: string; readonly controllerName: string }
  /** A node watch starts (a SNAPSHOT from 0, or a resume): a half-received snapshot is dropped. */
  | { readonly type: "nodes-watch"; readonly fromRevision: number }
  | {
      readonly type: "node";
      readonly at: number;
      readonly event: NodeEventKind;
      readonly revision: number;
      readonly node?: NodeView;
    }
  | { readonly type: "models-watch"; readonly fromRevision: number }
  | {
      readonly type: "model";
      readonly at: number;
      readonly event: NodeEventKind;
      readonly revision: number;
      readonly model?: ModelView;
    }
  /** The whole model list at once (StreamUpdates "models"). */
  | { readonly type: "models-replace"; readonly at: number; readonly models: readonly ModelView[] }
  | {
      readonly type: "models-source";
      readonly at: number;
      readonly source: TuiState["modelsSource"];
      readonly why?: string;
    }
  | { readonly type: "request"; readonly at: number; readonly request: RequestView }
  /** Requests listed (ListJoinRequests): merged, never removing what the watch has shown. */
  | { readonly type: "requests-list"; readonly at: number; readonly requests: readonly RequestView[] }
  | { readonly type: "totals"; readonly totals: ClusterTotalsView | undefined }
  | { readonly type: "load"; readonly nodeId: string; readonly sample: LoadSample }
  | { readonly type: "loads-unavailable"; readonly at: number; readonly why: string }
  | { readonly type: "log"; readonly at: number; readonly level: Level; readonly text: string }
  | { readonly type: "notice"; readonly at: number; readonly level: Level; readonly text: string }
  | { readonly type: "resize"; readonly columns: number; readonly rows: number };

/** What a key press asks the outside world to do. */
export type Effect =
  | { readonly kind: "quit" }
  | { readonly kind: "answer"; readonly request: RequestView; readonly accept: boolean };

/** Readings kept per node (the sparklines show as many as fit). */
export const loadHistory = 60;
/** Lines kept in the Events tab. */
export const logLimit = 1000;
/** How long a notice stays in the footer. */
export const noticeMs = 6000;

const emptyTab: TabView = { selected: undefined, offset: 0, filter: "" };

export function initialState(server: string, columns = 80, rows = 24): TuiState {
  return {
    connection: { state: "connecting", server, error: undefined, retryAt: undefined },
    clusterId: undefined,
    controllerName: undefined,
    nodes: new Map(),
    nodesRevision: 0,
    nodesSynced: false,
    nodeSnapshot: undefined,
    models: new Map(),
    modelsRevision: 0,
    modelsSynced: false,
    modelSnapshot: undefined,
    modelsSource: "watch",
    requests: new Map(),
    totals: undefined,
    loads: new Map(),
    loadsUnavailable: undefined,
    log: [],
    nextSeq: 1,
    tab: "nodes",
    views: { nodes: emptyTab, models: emptyTab, requests: emptyTab, events: emptyTab },
    editingFilter: false,
    notice: undefined,
    columns,
    rows,
  };
}
