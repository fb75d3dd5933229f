import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Backoff } from "../../src/base/backoff.ts";
import type { NewJoinRequest } from "../../src/core/admission/join-requests.ts";
import { JoinRequestState, PendingJoinSchema } from "../../src/gen/corral/v1/join_pb.ts";
import { NodeEventType, NodeRole, NodeSchema, NodeStatus } from "../../src/gen/corral/v1/nodes_pb.ts";
import { ClusterMetricsSchema, MetricValueSchema } from "../../src/gen/node_pb.ts";
import { loadSample, nodeView, requestView } from "../../src/tui/convert.ts";
import { runFeeds, type TuiClients, withIdleLimit } from "../../src/tui/feeds.ts";
import { fromInk, type InkKey, type KeyPress, press } from "../../src/tui/keys.ts";
import {
  type Action,
  initialState,
  loadHistory,
  type ModelView,
  type NodeView,
  type RequestView,
  type TuiState,
} from "../../src/tui/model.ts";
import { reduce } from "../../src/tui/reducer.ts";
import { clip, lineWidth, renderScreen, screenText } from "../../src/tui/screen.ts";
import { visibleNodes, visibleRequests } from "../../src/tui/selectors.ts";
import { sparkBars, sparkline } from "../../src/tui/sparkline.ts";
import { TuiStore } from "../../src/tui/store.ts";
import { fit, sanitize, textWidth, truncate } from "../../src/tui/text.ts";
import { startTestController, type TestController } from "../helpers/controller.ts";
import { corralBin } from "../helpers/corral-processes.ts";

const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function node(name: string, status: NodeView["status"] = "ready", extra: Partial<NodeView> = {}): NodeView {
  return {
    id: `${name}-id`,
    name,
    role: "agent",
    status,
    address: "10.0.0.1:7444",
    cpuCores: 4,
    memoryMb: 8192,
    gpus: [],
    maxLayers: 40,
    usedLayers: 0,
    version: "0.1.0",
    labels: {},
    ...extra,
  };
}

function request(id: number, name: string, state: RequestView["state"] = "pending"): RequestView {
  return {
    id: String(id),
    name,
    nodeId: "",
    sourceAddress: `10.9.0.${id}`,
    address: "",
    fingerprint: `sha256:${"ab".repeat(32)}`,
    metadata: "type=gpu-box",
    state,
    createdAt: t0,
    expiresAt: t0 + 300_000,
    decidedBy: state === "pending" ? "" : "admin",
    reason: "",
  };
}

function model(name: string, state: ModelView["state"], ranges: [string, number, number][] = []): ModelView {
  return {
    id: `${name}-id`,
    name,
    version: "v1",
    layerCount: 80,
    placedLayers: ranges.reduce((sum, [, , count]) => sum + count, 0),
    sizeBytes: 4 * 1024 ** 3,
    state,
    message: "",
    assignments: ranges.map(([n, start, count]) => ({ node: n, start, count })),
  };
}

const apply = (state: TuiState, ...actions: Action[]) => actions.reduce(reduce, state);

/** A state with nodes listed, as after the first SYNCED. */
function listed(nodes: NodeView[], columns = 120, rows = 40): TuiState {
  return apply(
    initialState("127.0.0.1:8080", columns, rows),
    { type: "connection", at: t0, state: "connected" },
    ...nodes.map((n): Action => ({ type: "node", at: t0, event: "snapshot", revision: 7, node: n })),
    { type: "node", at: t0, event: "synced", revision: 7 },
  );
}

const keys = (state: TuiState, ...presses: (KeyPress | string)[]) => {
  let current = state;
  const effects = [];
  for (const p of presses) {
    const key: KeyPress = typeof p === "string" ? { name: "char", char: p } : p;
    const result = press(current, key, t0);
    current = result.state;
    if (result.effect !== undefined) effects.push(result.effect);
  }
  return { state: current, effects };
};

describe("tui: sparkline", () => {
  it("maps values onto eight bars, newest on the right, on a fixed scale", () => {
    assert.equal(sparkBars.length, 8);
    assert.equal(sparkline([0, 50, 100], 3, { min: 0, max: 100 }), "▁▅█");
    assert.equal(
      sparkline([0, 100 / 7, 200 / 7, 300 / 7, 400 / 7, 500 / 7, 600 / 7, 100], 8, { min: 0, max: 100 }),
      "▁▂▃▄▅▆▇█",
    );
    // Clamped to the scale.
    assert.equal(sparkline([-20, 250], 2, { min: 0, max: 100 }), "▁█");
  });

  it("right-aligns short series, keeps only the newest that fit, and leaves gaps for missing values", () => {
    assert.equal(sparkline([100], 4, { min: 0, max: 100 }), "   █");
    assert.equal(sparkline([0, 0, 0, 100, 100], 2, { min: 0, max: 100 }), "██");
    assert.equal(sparkline([0, undefined, 100], 3, { min: 0, max: 100 }), "▁ █");
    assert.equal(sparkline([], 3), "   ");
    assert.equal(sparkline([1, 2, 3], 0), "");
  });

  it("scales to the values shown when no scale is given; a flat series sits in the middle", () => {
    assert.equal(sparkline([10, 20, 30], 3), "▁▅█");
    assert.equal(sparkline([5, 5, 5], 3), "▄▄▄");
  });
});

describe("tui: text", () => {
  it("fits, truncates with an ellipsis and neutralises control characters", () => {
    assert.equal(fit("abc", 5), "abc  ");
    assert.equal(fit("abc", 5, "right"), "  abc");
    assert.equal(fit("abcdef", 4), "abc…");
    assert.equal(truncate("日本語", 4), "日…");
    assert.equal(textWidth("日本"), 4);
    assert.equal(sanitize("evil\u001b[2Jname\n"), "evil�[2Jname�");
  });
});

describe("tui: reducer", () => {
  it("swaps in a snapshot at SYNCED, remembers the revision and logs one line", () => {
    const state = listed([node("a"), node("b", "suspect")]);
    assert.deepEqual([...state.nodes.keys()].sort(), ["a-id", "b-id"]);
    assert.equal(state.nodesRevision, 7);
    assert.equal(state.nodesSynced, true);
    assert.equal(state.nodeSnapshot, undefined);
    assert.deepEqual(
      state.log.map((e) => e.text),
      ["connected to 127.0.0.1:8080", "2 nodes listed"],
    );
  });

  it("applies puts and deletes live, logging arrivals, status changes and removals", () => {
    let state = listed([node("a"), node("b")]);
    state = apply(
      state,
      { type: "node", at: t0, event: "put", revision: 8, node: node("b", "down") },
      { type: "node", at: t0, event: "put", revision: 9, node: node("c", "pending") },
      { type: "node", at: t0, event: "put", revision: 10, node: node("c", "pending", { usedLayers: 3 }) },
      { type: "node", at: t0, event: "deleted", revision: 11, node: node("a") },
    );
    assert.equal(state.nodes.get("b-id")?.status, "down");
    assert.equal(state.nodes.get("c-id")?.usedLayers, 3);
    assert.equal(state.nodes.has("a-id"), false);
    assert.equal(state.nodesRevision, 11);
    assert.deepEqual(
      state.log.slice(2).map((e) => [e.level, e.text]),
      [
        ["bad", "node b: ready → down"],
        ["info", "node c joined (pending)"],
        ["warn", "node a was removed"],
      ],
    );
  });

  it("after a fresh listing on reconnect, logs what changed while away; a restarted watch drops a half snapshot", () => {
    let state = listed([node("a"), node("b")]);
    state = apply(
      state,
      { type: "node", at: t0, event: "snapshot", revision: 20, node: node("zombie") },
      { type: "nodes-watch", fromRevision: 0 },
      { type: "node", at: t0, event: "snapshot", revision: 20, node: node("a", "suspect") },
      { type: "node", at: t0, event: "snapshot", revision: 20, node: node("d") },
      { type: "node", at: t0, event: "synced", revision: 20 },
    );
    assert.deepEqual([...state.nodes.keys()].sort(), ["a-id", "d-id"]);
    assert.deepEqual(
      state.log.slice(2).map((e) => e.text),
      ["node a: ready → suspect", "node d joined (ready)", "node b was removed"],
    );
  });

  it("keeps a join request's decision even when an older listing still says pending", () => {
    let state = initialState("s");
    state = apply(
      state,
      { type: "request", at: t0, request: request(1, "x") },
      { type: "request", at: t0, request: request(1, "x", "accepted") },
      { type: "requests-list", at: t0, requests: [request(1, "x"), request(2, "y", "rejected")] },
    );
    assert.equal(state.requests.get("1")?.state, "accepted");
    assert.equal(state.requests.get("2")?.state, "rejected");
    assert.deepEqual(
      state.log.map((e) => e.text),
      ["join request #1 x from 10.9.0.1 is waiting", "join request #1 x accepted by admin"],
    );
  });

  it("follows models and logs placement changes", () => {
    let state = apply(
      initialState("s"),
      { type: "model", at: t0, event: "snapshot", revision: 3, model: model("llama", "unplaced") },
      { type: "model", at: t0, event: "synced", revision: 3 },
      {
        type: "model",
        at: t0,
        event: "put",
        revision: 4,
        model: model("llama", "placed", [
          ["a", 0, 40],
          ["b", 40, 40],
        ]),
      },
      {
        type: "model",
        at: t0,
        event: "put",
        revision: 5,
        model: model("llama", "placed", [["b", 0, 80]]),
      },
    );
    assert.equal(state.modelsRevision, 5);
    assert.deepEqual(
      state.log.map((e) => e.text),
      ["model llama: unplaced → placed", "model llama re-placed: b 0–79"],
    );
    state = reduce(state, {
      type: "model",
      at: t0,
      event: "deleted",
      revision: 6,
      model: model("llama", "placed"),
    });
    assert.equal(state.models.size, 0);
  });

  it("keeps a bounded load history and counts a reading polled twice once", () => {
    let state = initialState("s");
    const sample = (at: number, cpu: number) => ({
      type: "load" as const,
      nodeId: "n",
      sample: { at, cpuPercent: cpu, memoryPercent: undefined, memoryUsedMb: 100 },
    });
    state = apply(state, sample(1000, 10), sample(1000, 12), sample(2000, 20));
    assert.deepEqual(
      state.loads.get("n")?.map((s) => s.cpuPercent),
      [12, 20],
    );
    for (let i = 0; i < loadHistory + 10; i++) state = reduce(state, sample(3000 + i * 1000, i));
    assert.equal(state.loads.get("n")?.length, loadHistory);
  });

  it("logs losing and regaining the controller once per transition", () => {
    const state = apply(
      initialState("127.0.0.1:1"),
      { type: "connection", at: t0, state: "connected" },
      { type: "connection", at: t0, state: "disconnected", error: "gone", retryInMs: 1000 },
      { type: "connection", at: t0 + 1000, state: "disconnected", error: "still gone", retryInMs: 2000 },
      { type: "connection", at: t0 + 3000, state: "connected" },
    );
    assert.deepEqual(
      state.log.map((e) => e.text),
      ["connected to 127.0.0.1:1", "lost the controller: gone", "connected to 127.0.0.1:1"],
    );
  });
});

describe("tui: keys", () => {
  it("switches tabs with Tab, Shift-Tab and 1-4", () => {
    const state = listed([node("a")]);
    assert.equal(keys(state, { name: "tab" }).state.tab, "models");
    assert.equal(keys(state, { name: "backtab" }).state.tab, "events");
    assert.equal(keys(state, "3").state.tab, "requests");
    assert.equal(keys(state, "3", { name: "tab" }, { name: "tab" }).state.tab, "nodes");
  });

  it("moves the selection with arrows and j/k, sticking to the node when the list changes", () => {
    let state = listed([node("a"), node("b"), node("c")]);
    state = keys(state, "j", { name: "down" }, "k").state;
    assert.equal(state.views.nodes.selected, "b-id");
    // A node sorting before it arrives: the selection stays on b.
    state = reduce(state, { type: "node", at: t0, event: "put", revision: 8, node: node("0-first") });
    assert.equal(state.views.nodes.selected, "b-id");
    state = keys(state, { name: "end" }).state;
    assert.equal(state.views.nodes.selected, "c-id");
    state = keys(state, { name: "down" }).state;
    assert.equal(state.views.nodes.selected, "c-id", "stops at the end");
  });

  it("filters with / (typing, Backspace, Enter keeps it) and clears with Esc", () => {
    let state = listed([node("alpha"), node("beta"), node("gamma", "down")]);
    state = keys(state, "/", "b", "x", { name: "backspace" }, "e").state;
    assert.equal(state.editingFilter, true);
    assert.equal(state.views.nodes.filter, "be");
    assert.deepEqual(
      visibleNodes(state).map((n) => n.name),
      ["beta"],
    );
    state = keys(state, { name: "return" }).state;
    assert.equal(state.editingFilter, false);
    // Keys act again once the filter is kept; q typed in the filter would not have quit.
    assert.deepEqual(keys(state, "q").effects, [{ kind: "quit" }]);
    // Matches statuses too.
    assert.deepEqual(
      visibleNodes(keys(state, { name: "escape" }, "/", "d", "o", "w", "n").state).map((n) => n.name),
      ["gamma"],
    );
    state = keys(state, { name: "escape" }).state;
    assert.equal(state.views.nodes.filter, "");
    assert.equal(visibleNodes(state).length, 3);
  });

  it("a and r answer the selected pending request on the Requests tab, and nothing else", () => {
    let state = apply(
      listed([node("a")]),
      { type: "request", at: t0, request: request(1, "x") },
      { type: "request", at: t0, request: request(2, "y") },
      { type: "request", at: t0, request: request(3, "z", "accepted") },
    );
    assert.deepEqual(keys(state, "a").effects, [], "not on the Nodes tab");
    state = keys(state, "3").state;
    assert.deepEqual(
      visibleRequests(state, t0).map((r) => r.id),
      ["1", "2", "3"],
    );
    const accepted = keys(state, "j", "a");
    assert.deepEqual(accepted.effects, [{ kind: "answer", request: request(2, "y"), accept: true }]);
    assert.deepEqual(keys(state, "r").effects, [{ kind: "answer", request: request(1, "x"), accept: false }]);
    const decided = keys(state, { name: "end" }, "a");
    assert.deepEqual(decided.effects, []);
    assert.match(decided.state.notice?.text ?? "", /already accepted/);
  });

  it("q and Ctrl-C quit; Ctrl-C even while typing a filter", () => {
    const state = listed([]);
    assert.deepEqual(keys(state, "q").effects, [{ kind: "quit" }]);
    assert.deepEqual(keys(state, "/", { name: "ctrl-c" }).effects, [{ kind: "quit" }]);
    assert.deepEqual(keys(state, "/", "q").effects, []);
  });

  it("maps Ink's keys, and presses characters that arrive together one by one", () => {
    const none: InkKey = {
      upArrow: false,
      downArrow: false,
      leftArrow: false,
      rightArrow: false,
      pageDown: false,
      pageUp: false,
      return: false,
      escape: false,
      ctrl: false,
      shift: false,
      tab: false,
      backspace: false,
      delete: false,
      meta: false,
    };
    assert.deepEqual(fromInk("", { ...none, tab: true, shift: true }), [{ name: "backtab" }]);
    assert.deepEqual(fromInk("c", { ...none, ctrl: true }), [{ name: "ctrl-c" }]);
    assert.deepEqual(fromInk("", { ...none, delete: true }), [{ name: "backspace" }]);
    assert.deepEqual(fromInk("j", none), [{ name: "char", char: "j" }]);
    assert.deepEqual(fromInk("\u0007", none), []);
    // Text and Enter in one piece, as tmux send-keys "/abc" Enter delivers them.
    assert.deepEqual(fromInk("/abc\r", none), [{ name: "char", char: "/abc" }, { name: "return" }]);

    const store = new TuiStore("s", 120, 40, () => t0);
    store.dispatch({ type: "node", at: t0, event: "synced", revision: 1 });
    assert.deepEqual(store.press({ name: "char", char: "2/ab" }), []);
    assert.equal(store.getState().tab, "models");
    assert.equal(store.getState().views.models.filter, "ab");
  });
});

describe("tui: screen", () => {
  const now = t0 + 10_000;
  const busy = () =>
    apply(
      listed([
        node("agent-1"),
        node("agent-2", "suspect"),
        node("agent-3", "down"),
        node("agent-4", "pending"),
      ]),
      ...[10, 40, 80, 95].map(
        (cpu, i): Action => ({
          type: "load",
          nodeId: "agent-1-id",
          sample: { at: t0 + i * 1000, cpuPercent: cpu, memoryPercent: 50, memoryUsedMb: 4096 },
        }),
      ),
      {
        type: "totals",
        totals: {
          totalNodes: 4,
          healthyNodes: 1,
          totalMemoryMb: 32768,
          availableMemoryMb: 8192,
          totalGpus: 0,
          totalLayers: 160,
          allocatedLayers: 40,
          utilization: 0.25,
        },
      },
    );

  it("fills the terminal but one line, never wider than it, with nodes, statuses and sparklines", () => {
    const state = busy();
    const lines = renderScreen(state, now);
    assert.equal(lines.length, 39);
    for (const line of lines) assert.ok(lineWidth(line) <= 120, `too wide: ${screenText([line])}`);
    const text = screenText(lines);
    assert.match(text, /● connected · 127\.0\.0\.1:8080/);
    assert.match(text, /nodes 4 \(1 ready · 1 suspect · 1 down · 1 pending\)/);
    assert.match(text, /layers 40\/160 \(25%\)/);
    assert.match(text, /agent-1\s+ready/);
    assert.match(text, /agent-3\s+down/);
    assert.match(text, /▂▄▇█\s+95%/, "the CPU sparkline ends at the newest reading");
    const row = lines.find((line) => screenText([line]).includes("agent-3"));
    assert.equal(row?.find((s) => s.text.trim() === "down")?.color, "red");
    assert.equal(
      lines.find((line) => screenText([line]).includes("agent-4"))?.find((s) => s.text.trim() === "pending")
        ?.color,
      "cyan",
    );
  });

  it("says disconnected, retrying… with the reason while the controller is away", () => {
    const state = reduce(busy(), {
      type: "connection",
      at: now,
      state: "disconnected",
      error: "connect ECONNREFUSED",
      retryInMs: 4000,
    });
    const title = screenText(renderScreen(state, now).slice(0, 1));
    assert.match(title, /disconnected, retrying… \(next try in 4s; connect ECONNREFUSED\)/);
    assert.match(
      screenText(renderScreen(state, now)),
      /agent-1\s+ready/,
      "the last known nodes stay on screen",
    );
  });

  it("drops the least important columns on a narrow terminal and survives a tiny one", () => {
    const narrow = reduce(busy(), { type: "resize", columns: 60, rows: 12 });
    const lines = renderScreen(narrow, now);
    assert.equal(lines.length, 11);
    for (const line of lines) assert.ok(lineWidth(line) <= 60);
    const text = screenText(lines);
    assert.match(text, /NAME\s+STATUS/);
    assert.doesNotMatch(text, /ADDRESS/);
    const tiny = renderScreen(reduce(busy(), { type: "resize", columns: 20, rows: 3 }), now);
    assert.equal(tiny.length, 2);
    assert.ok(tiny.every((line) => lineWidth(line) <= 20));
  });

  it("scrolls to keep the selection in view", () => {
    let state = listed(
      Array.from({ length: 30 }, (_, i) => node(`n-${String(i).padStart(2, "0")}`)),
      80,
      12,
    );
    state = keys(state, ...Array.from({ length: 20 }, () => "j")).state;
    const text = screenText(renderScreen(state, now));
    assert.match(text, /▶ n-20/);
    assert.doesNotMatch(text, /n-00/);
    assert.match(text, /21\/30/);
  });

  it("shows the Requests and Events tabs", () => {
    const state = apply(busy(), { type: "request", at: t0, request: request(5, "node-x") });
    const requests = screenText(renderScreen(keys(state, "3").state, now));
    assert.match(requests, /#5\s+node-x\s+pending\s+10\.9\.0\.5/);
    assert.match(requests, /a accept · r reject/);
    const events = screenText(renderScreen(keys(state, "4").state, now));
    assert.match(events, /join request #5 node-x from 10\.9\.0\.5 is waiting/);
  });

  it("clips lines segment by segment", () => {
    assert.equal(screenText([clip([{ text: "abc" }, { text: "defgh" }], 6)]), "abcde…");
  });
});

describe("tui: convert", () => {
  it("turns wire messages into views", () => {
    const view = nodeView(
      create(NodeSchema, {
        id: "n1",
        name: "agent-1",
        role: NodeRole.AGENT,
        address: "10.0.0.1",
        port: 7444,
        status: NodeStatus.SUSPECT,
        resources: {
          cpuCores: 8,
          memoryMb: 16384n,
          gpus: [{ name: "A100", memoryMb: 40960n }],
          maxLayers: 40,
        },
      }),
    );
    assert.equal(view.address, "10.0.0.1:7444");
    assert.equal(view.status, "suspect");
    assert.equal(view.memoryMb, 16384);
    assert.deepEqual(view.gpus, [{ name: "A100", memoryMb: 40960 }]);
    const pending = requestView(
      create(PendingJoinSchema, {
        id: 12n,
        name: "x",
        state: JoinRequestState.PENDING,
        expiresAt: timestampFromMs(t0),
      }),
    );
    assert.deepEqual([pending.id, pending.state, pending.expiresAt], ["12", "pending", t0]);
  });

  it("reads a load sample, leaving out figures reported with an error", () => {
    const metric = (name: string, value: number, error = "") =>
      create(MetricValueSchema, { name, value, error, timestamp: BigInt(t0 / 1000) });
    const sample = loadSample(
      [metric("cpu_usage", 42), metric("memory_usage", 0, "no memory size"), metric("memory_used_mb", 900)],
      0,
    );
    assert.deepEqual(sample, { at: t0, cpuPercent: 42, memoryPercent: undefined, memoryUsedMb: 900 });
    assert.equal(loadSample([metric("cpu_usage", 0, "no load reported")], 0), undefined);
  });
});

// ------------------------------------------------------------------ feeds, against fake clients

/** An async stream that yields `items`, then waits until `signal` aborts (or throws `end`). */
async function* stream<T>(items: T[], signal: AbortSignal | undefined, end?: Error): AsyncGenerator<T> {
  for (const item of items) yield item;
  if (end !== undefined) throw end;
  await new Promise<void>((resolve) => {
    if (signal?.aborted) resolve();
    signal?.addEventListener("abort", () => resolve(), { once: true });
  });
}

describe("tui: feeds", () => {
  it("reconnects with backoff and resumes the node watch after the last revision seen", async () => {
    const store = new TuiStore("fake:1", 120, 40);
    const froms: bigint[] = [];
    let sessions = 0;
    const abort = new AbortController();
    const n = (name: string, status = NodeStatus.READY) => create(NodeSchema, { id: name, name, status });
    const clients = {
      cluster: {
        getClusterStatus: async () => {
          sessions++;
          if (sessions === 2) throw new ConnectError("connect ECONNREFUSED", Code.Unavailable);
          return { clusterId: "c1", controllerName: "ctl", revision: 50n };
        },
      },
      nodes: {
        watchNodes: (request: { fromRevision: bigint }, options: { signal?: AbortSignal }) => {
          froms.push(request.fromRevision);
          if (froms.length === 1) {
            return stream(
              [
                { type: NodeEventType.SNAPSHOT, revision: 10n, node: n("a") },
                { type: NodeEventType.SYNCED, revision: 10n },
                { type: NodeEventType.PUT, revision: 12n, node: n("a", NodeStatus.DOWN) },
              ],
              options.signal,
              new ConnectError("stream closed", Code.Unavailable),
            );
          }
          return stream([{ type: NodeEventType.PUT, revision: 13n, node: n("b") }], options.signal);
        },
      },
      join: {
        listJoinRequests: async () => ({ requests: [] }),
        watchJoinRequests: (_: unknown, options: { signal?: AbortSignal }) => stream([], options.signal),
      },
      models: {
        watchModels: (_: unknown, options: { signal?: AbortSignal }) =>
          stream([], options.signal, new ConnectError("no", Code.Unimplemented)),
      },
      tui: {
        streamUpdates: (request: { updateTypes: string[] }, options: { signal?: AbortSignal }) =>
          request.updateTypes[0] === "metrics"
            ? stream(
                [
                  {
                    updateType: "metrics",
                    metrics: create(ClusterMetricsSchema, { totalNodes: 2, totalLayers: 10 }),
                  },
                ],
                options.signal,
              )
            : stream([{ updateType: "models", models: [] }], options.signal),
      },
      discovery: {},
      nodeService: {
        getMetrics: async () => ({
          metrics: [create(MetricValueSchema, { name: "cpu_usage", value: 7, timestamp: 1n })],
        }),
      },
    } as unknown as TuiClients;

    const feeds = runFeeds(clients, {
      dispatch: store.dispatch,
      getState: store.getState,
      signal: abort.signal,
      backoff: new Backoff(10, 20, () => 1),
      loadIntervalMs: 50,
    });
    const deadline = Date.now() + 5000;
    while (!store.getState().nodes.has("b") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    abort.abort();
    await feeds;

    const state = store.getState();
    assert.deepEqual(froms, [0n, 13n], "the second watch resumes after revision 12");
    assert.equal(sessions, 3, "one failed attempt in between");
    assert.equal(state.connection.state, "connected");
    assert.deepEqual(
      [...state.nodes.values()].map((v) => [v.name, v.status]),
      [
        ["a", "down"],
        ["b", "ready"],
      ],
    );
    assert.equal(state.totals?.totalNodes, 2);
    assert.equal(
      state.modelsSource,
      "updates",
      "models fall back to StreamUpdates where WatchModels is not served",
    );
    assert.equal(state.loads.get("a")?.[0]?.cpuPercent, undefined, "a is down: not polled");
    assert.ok(
      state.log.some((e) => e.text.startsWith("lost the controller")),
      state.log.map((e) => e.text).join("\n"),
    );
  });

  it("gives up on a stream that stays silent", async () => {
    const silent = stream<number>([1], undefined);
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const item of withIdleLimit(silent, 50, "update")) seen.push(item);
      })(),
      (error) => error instanceof ConnectError && error.code === Code.Unavailable,
    );
    assert.deepEqual(seen, [1]);
  });
});

// ------------------------------------------------------------------ end to end, in tmux

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000, env }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const tmuxAvailable = (await run("tmux", ["-V"])).code === 0;

describe("corral tui against a real controller, in tmux", {
  skip: tmuxAvailable ? false : "tmux is not installed",
  timeout: 180_000,
}, () => {
  // A tmux server of its own (-L), so that the user's tmux and its environment play no part.
  const socket = `corral-tui-test-${process.pid}`;
  const session = "tui";
  const tmux = (...args: string[]) => run("tmux", ["-L", socket, ...args]);
  let cluster: TestController;
  let dataDir: string;
  let bridgePort: number;

  const liveness = { liveness: { minInterval: "10m", downAfter: "1h" } };
  const config = (port: number) => ({
    node: { name: "TUI Test Controller" },
    grpcBridge: { address: `127.0.0.1:${port}` },
    ...liveness,
  });

  const screen = async (colours = false) =>
    (await tmux("capture-pane", "-p", ...(colours ? ["-e"] : []), "-t", session)).stdout;

  /** Polls the pane until `test` passes (at most 15 s). */
  const waitFor = async (what: string, test: (text: string) => boolean, colours = false): Promise<string> => {
    const deadline = Date.now() + 15_000;
    let text = "";
    while (Date.now() < deadline) {
      text = await screen(colours);
      if (test(text)) return text;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`no ${what} within 15 s; the screen:\n${text}`);
  };

  const keysIn = async (...keysToSend: string[]) => {
    const result = await tmux("send-keys", "-t", session, ...keysToSend);
    assert.equal(result.code, 0, result.stderr);
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "corral-tui-"));
    cluster = await startTestController(config(0), {}, dataDir);
    bridgePort = cluster.bridgePort;
    const { registry, joinRequests } = cluster.controller.context;
    await registry.register({
      name: "tui-alpha",
      address: "10.1.0.1:7444",
      status: "ready",
      resources: { cpuCores: 8, memoryMb: 16_384, maxLayers: 40 },
    });
    await registry.register({ name: "tui-bravo", address: "10.1.0.2:7444", status: "suspect" });
    await registry.register({ name: "tui-charlie", status: "pending" });
    const joiner: NewJoinRequest = {
      nodeId: "",
      name: "tui-joiner",
      metadata: { type: { kind: "string", value: "gpu-box" } },
      address: "10.9.0.7:7444",
      sourceAddress: "10.9.0.7",
      keyFingerprint: `sha256:${"cd".repeat(32)}`,
      csrPem: "not a real CSR: the book only stores it",
      resources: { cpuCores: 4, memoryMb: 8192, gpus: [], maxLayers: 0, usedLayers: 0, disks: [] },
      services: [],
      labels: {},
      version: "0.1.0",
    };
    await joinRequests.submit(joiner, 300_000);

    // The caller's CORRAL_* settings must not steer the UI, nor NO_COLOR / FORCE_COLOR its colours; the tmux
    // server (and so the UI) gets this environment.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !key.startsWith("CORRAL_") && key !== "NO_COLOR" && key !== "FORCE_COLOR",
      ),
    );
    const command = `${process.execPath} ${corralBin} --server 127.0.0.1:${bridgePort} tui; echo "tui exited with $?"; sleep 120`;
    const started = await run(
      "tmux",
      ["-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
      env,
    );
    assert.equal(started.code, 0, started.stderr);
  });

  after(async () => {
    await tmux("kill-server");
    await cluster?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("lists the nodes with their statuses, in colour", async () => {
    const text = await waitFor(
      "node list",
      (s) => /tui-alpha\s+ready/.test(s) && /tui-bravo\s+suspect/.test(s) && /tui-charlie\s+pending/.test(s),
    );
    assert.match(text, /● connected/);
    assert.match(text, /TUI Test Controller\s+ready\s+controller/);
    assert.match(text, /NAME\s+STATUS\s+ROLE\s+ADDRESS/);
    assert.match(text, /1 Nodes \(4\)\s+2 Models \(0\)\s+3 Requests \(1\)\s+4 Events/);
    const coloured = await screen(true);
    // SGR 32 (green) just before "ready", 33 (yellow) before "suspect", 36 (cyan) before "pending".
    const esc = "\u001b";
    const coloredAs = (sgr: number, word: string) =>
      new RegExp(`${esc}\\[[0-9;]*${sgr}m(${esc}\\[[0-9;]*m)*${word}`);
    assert.match(coloured, coloredAs(32, "ready"));
    assert.match(coloured, coloredAs(33, "suspect"));
    assert.match(coloured, coloredAs(36, "pending"));
  });

  it("shows a status change live", async () => {
    await cluster.controller.context.registry.setStatus("tui-bravo", "down");
    await waitFor("tui-bravo down", (s) => /tui-bravo\s+down/.test(s));
    await waitFor("the header's counts", (s) => /nodes 4 \(2 ready · 1 down · 1 pending\)/.test(s));
  });

  it("draws a node's CPU and memory from the load it reports", async () => {
    const { registry, loads } = cluster.controller.context;
    const alpha = await registry.get("tui-alpha");
    loads.record(alpha.id, { cpuUsage: 42, memoryUsedMb: 4096, at: Date.now() });
    // 4 096 of 16 384 MiB: 25 %.
    await waitFor("tui-alpha's load", (s) => /tui-alpha\s+ready\s.*[▁-█]\s+42%\s+[▁-█]\s+25%/.test(s));
  });

  it("filters with / and clears the filter with Esc", async () => {
    await keysIn("/", "alp", "Enter");
    await waitFor("only tui-alpha", (s) => /tui-alpha\s+ready/.test(s) && !s.includes("tui-bravo"));
    assert.match(await screen(), /filter \/alp/);
    await keysIn("Escape");
    await waitFor("every node again", (s) => s.includes("tui-alpha") && s.includes("tui-bravo"));
  });

  it("lists the join request on the Requests tab and accepts it with a", async () => {
    await keysIn("3");
    await waitFor("the join request", (s) => /#\d+\s+tui-joiner\s+pending\s+10\.9\.0\.7/.test(s));
    const book = cluster.controller.context.joinRequests;
    const [pending] = (await book.list({ includeDecided: false })).filter((r) => r.name === "tui-joiner");
    assert.ok(pending !== undefined);
    await keysIn("a");
    const deadline = Date.now() + 15_000;
    while ((await book.get(pending.id)).state !== "accepted" && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal((await book.get(pending.id)).state, "accepted");
    await waitFor("the decision on screen", (s) => /tui-joiner\s+accepted/.test(s));
  });

  it("says disconnected, retrying… while the controller is away, and catches up when it is back", async () => {
    await cluster.close();
    await waitFor("the disconnected banner", (s) => s.includes("disconnected, retrying…"));
    cluster = await startTestController(config(bridgePort), {}, dataDir);
    await cluster.controller.context.registry.register({ name: "tui-delta", status: "ready" });
    await keysIn("1");
    await waitFor(
      "the new node after reconnecting",
      (s) => /● connected/.test(s) && /tui-delta\s+ready/.test(s),
    );
    await keysIn("4");
    const events = await waitFor("the events log", (s) => s.includes("lost the controller"));
    assert.match(events, /node tui-bravo: suspect → down/);
    assert.match(events, /join request #\d+ tui-joiner accepted/);
  });

  it("quits on q and gives the terminal back", async () => {
    await keysIn("q");
    const text = await waitFor("the process to end", (s) => s.includes("tui exited with"));
    assert.match(text, /tui exited with 0/);
    assert.doesNotMatch(text, /TUI Test Controller/, "the main screen is back, the UI's screen gone");
  });
});
