import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { Backoff } from "../base/backoff.ts";
import type { ClusterService } from "../gen/corral/v1/cluster_pb.ts";
import type { JoinService } from "../gen/corral/v1/join_pb.ts";
import type { ModelsService } from "../gen/corral/v1/models_pb.ts";
import type { NodesService } from "../gen/corral/v1/nodes_pb.ts";
import type { DiscoveryService, NodeService, TUIService } from "../gen/node_pb.ts";
import {
  eventKind,
  loadMetricNames,
  loadSample,
  modelView,
  modelViewFromInfo,
  nodeView,
  requestView,
  totalsView,
} from "./convert.ts";
import type { Action, TuiState } from "./model.ts";
import { visibleNodes } from "./selectors.ts";

/** The services the terminal UI reads, all over one connection. */
export interface TuiClients {
  readonly cluster: Client<typeof ClusterService>;
  readonly nodes: Client<typeof NodesService>;
  readonly join: Client<typeof JoinService>;
  readonly models: Client<typeof ModelsService>;
  readonly tui: Client<typeof TUIService>;
  readonly discovery: Client<typeof DiscoveryService>;
  readonly nodeService: Client<typeof NodeService>;
}

export interface FeedOptions {
  readonly dispatch: (action: Action) => void;
  readonly getState: () => TuiState;
  /** Ends every feed (the UI is quitting). */
  readonly signal: AbortSignal;
  /** A failure in words for the title line (the CLI's own wording of connection errors). */
  readonly describe?: (error: unknown) => string;
  /** How often each node's load is asked for (GetMetrics). */
  readonly loadIntervalMs?: number;
  /** StreamUpdates' interval for the cluster totals. */
  readonly totalsIntervalSeconds?: number;
  /** With no update at all on the totals stream for this long, the controller is taken for gone. */
  readonly idleTimeoutMs?: number;
  readonly backoff?: Backoff;
  /** requester_id in Distributed LLM calls. */
  readonly requesterId?: string;
  /** The most nodes whose load is polled each round (the ones shown first). */
  readonly maxPolledNodes?: number;
}

type Resolved = Required<Omit<FeedOptions, "backoff">> & { readonly backoff: Backoff };

export function codeOf(error: unknown): Code | undefined {
  return error instanceof ConnectError ? error.code : undefined;
}

/** Waits `ms`, or less when `signal` aborts (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

const untilAborted = (signal: AbortSignal) => sleep(2 ** 31 - 1, signal);

/** `source`, failing with UNAVAILABLE when no item arrives for `ms`. */
export async function* withIdleLimit<T>(
  source: AsyncIterable<T>,
  ms: number,
  what: string,
): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ConnectError(
                `no ${what} from the controller for ${Math.round(ms / 1000)} s`,
                Code.Unavailable,
              ),
            ),
          ms,
        );
      });
      try {
        const next = await Promise.race([iterator.next(), idle]);
        if (next.done) return;
        yield next.value;
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    // Not awaited: a `next()` may still be pending (it ends when the call's signal aborts).
    iterator.return?.().catch(() => undefined);
  }
}

/** Runs `work` for each item, at most `limit` at a time. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const ended = (what: string) => new ConnectError(`the controller ended the ${what}`, Code.Unavailable);

async function watchNodes(clients: TuiClients, o: Resolved, from: number, signal: AbortSignal) {
  let fromRevision = from;
  for (;;) {
    o.dispatch({ type: "nodes-watch", fromRevision });
    try {
      const stream = clients.nodes.watchNodes(
        { fromRevision: BigInt(fromRevision) },
        { signal, timeoutMs: 0 },
      );
      for await (const event of stream) {
        const kind = eventKind(event.type);
        if (kind === undefined) continue;
        o.dispatch({
          type: "node",
          at: Date.now(),
          event: kind,
          revision: Number(event.revision),
          ...(event.node === undefined ? {} : { node: nodeView(event.node) }),
        });
      }
    } catch (error) {
      if (signal.aborted) return;
      // The changes missed while away are no longer kept: list everything again.
      if (fromRevision > 0 && codeOf(error) === Code.OutOfRange) {
        o.dispatch({
          type: "log",
          at: Date.now(),
          level: "warn",
          text: "node history was compacted; listing again",
        });
        fromRevision = 0;
        continue;
      }
      throw error;
    }
    if (signal.aborted) return;
    throw ended("node watch");
  }
}

/** A viewer may not be allowed everything; an older controller may not serve everything. */
const notForUs = (error: unknown) => {
  const code = codeOf(error);
  return code === Code.Unimplemented || code === Code.PermissionDenied || code === Code.Unauthenticated;
};

async function watchRequests(clients: TuiClients, o: Resolved, signal: AbortSignal) {
  // The watch sends the pending requests; the listing adds the recently decided ones.
  const listing = clients.join
    .listJoinRequests({ includeDecided: true }, { signal, timeoutMs: 10_000 })
    .then((response) =>
      o.dispatch({ type: "requests-list", at: Date.now(), requests: response.requests.map(requestView) }),
    )
    .catch(() => undefined);
  try {
    for await (const event of clients.join.watchJoinRequests({}, { signal, timeoutMs: 0 })) {
      if (event.request !== undefined)
        o.dispatch({ type: "request", at: Date.now(), request: requestView(event.request) });
    }
  } catch (error) {
    if (signal.aborted) return;
    if (notForUs(error)) {
      o.dispatch({ type: "log", at: Date.now(), level: "warn", text: `join requests: ${o.describe(error)}` });
      await untilAborted(signal);
      return;
    }
    throw error;
  } finally {
    await listing;
  }
  if (!signal.aborted) throw ended("join request watch");
}

async function watchModels(clients: TuiClients, o: Resolved, from: number, signal: AbortSignal) {
  let fromRevision = from;
  for (;;) {
    o.dispatch({ type: "models-watch", fromRevision });
    try {
      const stream = clients.models.watchModels(
        { fromRevision: BigInt(fromRevision) },
        { signal, timeoutMs: 0 },
      );
      for await (const event of stream) {
        const kind = eventKind(event.type);
        if (kind === undefined) continue;
        o.dispatch({
          type: "model",
          at: Date.now(),
          event: kind,
          revision: Number(event.revision),
          ...(event.model === undefined ? {} : { model: modelView(event.model) }),
        });
      }
    } catch (error) {
      if (signal.aborted) return;
      if (fromRevision > 0 && codeOf(error) === Code.OutOfRange) {
        fromRevision = 0;
        continue;
      }
      throw error;
    }
    if (signal.aborted) return;
    throw ended("model watch");
  }
}

/** The native model watch; Distributed LLM's StreamUpdates "models" where that is not served. */
async function followModels(clients: TuiClients, o: Resolved, from: number, signal: AbortSignal) {
  if (o.getState().modelsSource === "watch") {
    try {
      await watchModels(clients, o, from, signal);
      return;
    } catch (error) {
      if (codeOf(error) !== Code.Unimplemented) throw error;
    }
  }
  o.dispatch({ type: "models-source", at: Date.now(), source: "updates" });
  try {
    const stream = clients.tui.streamUpdates(
      { requesterId: o.requesterId, intervalSeconds: 5, updateTypes: ["models"] },
      { signal, timeoutMs: 0 },
    );
    for await (const update of stream) {
      if (update.updateType === "models")
        o.dispatch({ type: "models-replace", at: Date.now(), models: update.models.map(modelViewFromInfo) });
    }
  } catch (error) {
    if (signal.aborted) return;
    if (notForUs(error)) {
      o.dispatch({ type: "models-source", at: Date.now(), source: "none", why: o.describe(error) });
      await untilAborted(signal);
      return;
    }
    throw error;
  }
  if (!signal.aborted) throw ended("model updates");
}

/**
 * Cluster totals from StreamUpdates "metrics" (sent at once on a change, and on every tick, which also
 * shows the controller is still there); GetClusterInfo polled where StreamUpdates is not served; else
 * the totals are computed from the nodes.
 */
async function followTotals(clients: TuiClients, o: Resolved, signal: AbortSignal) {
  try {
    const stream = clients.tui.streamUpdates(
      { requesterId: o.requesterId, intervalSeconds: o.totalsIntervalSeconds, updateTypes: ["metrics"] },
      { signal, timeoutMs: 0 },
    );
    for await (const update of withIdleLimit(stream, o.idleTimeoutMs, "update")) {
      if (update.metrics !== undefined) o.dispatch({ type: "totals", totals: totalsView(update.metrics) });
    }
    if (!signal.aborted) throw ended("cluster updates");
    return;
  } catch (error) {
    if (signal.aborted) return;
    if (!notForUs(error)) throw error;
  }
  while (!signal.aborted) {
    try {
      const info = await clients.discovery.getClusterInfo(
        { requesterId: o.requesterId, includeMetrics: true },
        { signal, timeoutMs: 10_000 },
      );
      o.dispatch({
        type: "totals",
        totals: info.metrics === undefined ? undefined : totalsView(info.metrics),
      });
    } catch (error) {
      if (signal.aborted) return;
      if (!notForUs(error)) throw error;
      o.dispatch({ type: "totals", totals: undefined });
      await untilAborted(signal);
      return;
    }
    await sleep(Math.max(1000, o.totalsIntervalSeconds * 1000), signal);
  }
}

/** Each live node's CPU and memory (GetMetrics), for the sparklines. */
async function pollLoads(clients: TuiClients, o: Resolved, signal: AbortSignal) {
  while (!signal.aborted) {
    const started = Date.now();
    const nodes = visibleNodes(o.getState())
      .filter((node) => node.status === "ready" || node.status === "suspect")
      .slice(0, o.maxPolledNodes);
    let refused: unknown;
    await eachLimited(nodes, 8, async (node) => {
      try {
        const response = await clients.nodeService.getMetrics(
          { nodeId: node.id, metricNames: [...loadMetricNames] },
          { signal, timeoutMs: 5_000 },
        );
        const sample = loadSample(response.metrics, Date.now());
        if (sample !== undefined) o.dispatch({ type: "load", nodeId: node.id, sample });
      } catch (error) {
        // One node that left or answered slowly is asked again next round.
        if (notForUs(error)) refused = error;
      }
    });
    if (signal.aborted) return;
    if (refused !== undefined) {
      o.dispatch({ type: "loads-unavailable", at: Date.now(), why: o.describe(refused) });
      await untilAborted(signal);
      return;
    }
    await sleep(Math.max(0, o.loadIntervalMs - (Date.now() - started)), signal);
  }
}

/**
 * Follows the controller until `signal` aborts: a session checks the controller answers
 * (GetClusterStatus), then runs every feed; when any of them fails (the controller went away, a stream
 * ended), all stop, the title says "disconnected, retrying…", and a new session starts after a backoff.
 * The node and model watches resume from the last revision seen, unless a different cluster answers.
 */
export async function runFeeds(clients: TuiClients, options: FeedOptions): Promise<void> {
  const o: Resolved = {
    describe: (error) => (error instanceof Error ? error.message : String(error)),
    loadIntervalMs: 2000,
    totalsIntervalSeconds: 2,
    idleTimeoutMs: 15_000,
    requesterId: "corral-tui",
    maxPolledNodes: 64,
    ...options,
    backoff: options.backoff ?? new Backoff(500, 15_000),
  };
  const { signal, dispatch } = o;
  let clusterId: string | undefined;
  while (!signal.aborted) {
    const session = new AbortController();
    const sessionSignal = AbortSignal.any([signal, session.signal]);
    const started = Date.now();
    let failure: unknown;
    const fail = (error: unknown) => {
      if (sessionSignal.aborted) return;
      failure = error;
      session.abort();
    };
    try {
      const status = await clients.cluster.getClusterStatus({}, { signal: sessionSignal, timeoutMs: 10_000 });
      const sameCluster = clusterId === undefined || clusterId === status.clusterId;
      clusterId = status.clusterId;
      dispatch({ type: "cluster", clusterId: status.clusterId, controllerName: status.controllerName });
      dispatch({ type: "connection", at: Date.now(), state: "connected" });
      const state = o.getState();
      const storeRevision = Number(status.revision);
      const resume = (synced: boolean, revision: number) =>
        sameCluster && synced && revision > 0 && revision <= storeRevision ? revision + 1 : 0;
      await Promise.all([
        watchNodes(clients, o, resume(state.nodesSynced, state.nodesRevision), sessionSignal).catch(fail),
        watchRequests(clients, o, sessionSignal).catch(fail),
        followModels(clients, o, resume(state.modelsSynced, state.modelsRevision), sessionSignal).catch(fail),
        followTotals(clients, o, sessionSignal).catch(fail),
        pollLoads(clients, o, sessionSignal).catch(fail),
      ]);
    } catch (error) {
      failure = error;
    }
    session.abort();
    if (signal.aborted) return;
    if (Date.now() - started > 10_000) o.backoff.reset();
    const wait = o.backoff.next();
    dispatch({
      type: "connection",
      at: Date.now(),
      state: "disconnected",
      error: failure === undefined ? "the session ended" : o.describe(failure),
      retryInMs: wait,
    });
    await sleep(wait, signal);
  }
}
