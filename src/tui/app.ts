import { Code, ConnectError } from "@connectrpc/connect";
import { Box, render, Text, useInput } from "ink";
import { createElement as h, useEffect, useState } from "react";
import { CorralError } from "../base/errors.ts";
import { type Connection, fromConnectError } from "../client/connection.ts";
import { ClusterService } from "../gen/corral/v1/cluster_pb.ts";
import { JoinService } from "../gen/corral/v1/join_pb.ts";
import { ModelsService } from "../gen/corral/v1/models_pb.ts";
import { NodesService } from "../gen/corral/v1/nodes_pb.ts";
import { DiscoveryService, NodeService, TUIService } from "../gen/node_pb.ts";
import { requestView } from "./convert.ts";
import { runFeeds, type TuiClients } from "./feeds.ts";
import { fromInk, type KeyPress } from "./keys.ts";
import type { Effect } from "./model.ts";
import { type Line, renderScreen } from "./screen.ts";
import { TuiStore } from "./store.ts";

/**
 * The rendering layer: Ink prints the lines screen.ts computes and hands key presses to keys.ts. All
 * layout, colour choice and state live in those pure modules.
 */

function ScreenLine({ line }: { line: Line }) {
  // An empty Text takes no height in Ink; a blank line must still hold its row.
  if (line.every((segment) => segment.text === "")) return h(Text, {}, " ");
  return h(
    Text,
    { wrap: "truncate" },
    ...line.map((segment, i) =>
      h(
        Text,
        {
          key: i,
          ...(segment.color === undefined ? {} : { color: segment.color }),
          bold: segment.bold === true,
          dimColor: segment.dim === true,
          inverse: segment.inverse === true,
        },
        segment.text,
      ),
    ),
  );
}

interface AppProps {
  readonly store: TuiStore;
  readonly onKey: (key: KeyPress) => void;
}

/** Repaints when the store changes (at most every 16 ms, so a burst of events is one frame) and every second (clock, ages, countdowns). */
function App({ store, onKey }: AppProps) {
  const [, setFrame] = useState(0);
  useEffect(() => {
    let timer: NodeJS.Timeout | undefined;
    const repaint = () => {
      timer ??= setTimeout(() => {
        timer = undefined;
        setFrame((n) => n + 1);
      }, 16);
    };
    const unsubscribe = store.subscribe(repaint);
    const tick = setInterval(() => setFrame((n) => n + 1), 1000);
    return () => {
      unsubscribe();
      clearInterval(tick);
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [store]);
  useInput((input, key) => {
    for (const pressed of fromInk(input, key)) onKey(pressed);
  });
  const lines = renderScreen(store.getState(), Date.now());
  return h(Box, { flexDirection: "column" }, ...lines.map((line, i) => h(ScreenLine, { key: i, line })));
}

const enterAltScreen = "\u001b[?1049h\u001b[2J\u001b[H";
const leaveAltScreen = "\u001b[?25h\u001b[?1049l";

export function tuiClients(connection: Connection): TuiClients {
  return {
    cluster: connection.client(ClusterService),
    nodes: connection.client(NodesService),
    join: connection.client(JoinService),
    models: connection.client(ModelsService),
    tui: connection.client(TUIService),
    discovery: connection.client(DiscoveryService),
    nodeService: connection.client(NodeService),
  };
}

/**
 * Runs the terminal UI on this process's terminal until `q`, Ctrl-C, SIGTERM or SIGHUP; the terminal is
 * given back as it was (main screen, cursor, cooked mode) however it ends.
 */
export async function runTui(connection: Connection): Promise<void> {
  const { stdin, stdout } = process;
  if (!stdin.isTTY || !stdout.isTTY) {
    throw new CorralError(
      "FAILED_PRECONDITION",
      "corral tui needs a terminal (stdin and stdout must be a TTY); for scripts use corral nodes ls / requests ls",
    );
  }
  const store = new TuiStore(connection.server, stdout.columns || 80, stdout.rows || 24);
  const clients = tuiClients(connection);
  const describe = (error: unknown) => {
    if (error instanceof CorralError) return error.message;
    // A stream the controller cancels as it stops (the CLI's hint about TLS does not apply to a call that worked).
    if (error instanceof ConnectError && error.code === Code.Canceled)
      return `the controller at ${connection.server} closed the connection (${error.rawMessage})`;
    return fromConnectError(error, connection.server, connection.tls).message;
  };
  const abort = new AbortController();

  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    stdout.write(leaveAltScreen);
  };
  process.once("exit", restore);
  stdout.write(enterAltScreen);

  const onResize = () => {
    const { columns, rows } = stdout;
    const state = store.getState();
    if (columns === state.columns && rows === state.rows) return;
    // Lines of the old size may be left behind (Ink erases only what it thinks it wrote): start clean.
    stdout.write("\u001b[2J\u001b[H");
    store.dispatch({ type: "resize", columns, rows });
  };
  // Before Ink's own listener, so that Ink's repaint after a resize already sees the new size.
  stdout.on("resize", onResize);

  let quit: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    quit = resolve;
  });

  const answer = async (effect: Extract<Effect, { kind: "answer" }>) => {
    const { request, accept } = effect;
    const verb = accept ? "accept" : "reject";
    try {
      const response = await clients.join.answerJoinRequest(
        { request: request.id, accept, reason: accept ? "" : "rejected in corral tui" },
        { timeoutMs: 10_000 },
      );
      const decided = response.request === undefined ? undefined : requestView(response.request);
      if (decided !== undefined) store.dispatch({ type: "request", at: Date.now(), request: decided });
      store.dispatch({
        type: "notice",
        at: Date.now(),
        level: accept ? "good" : "warn",
        text: `${accept ? "accepted" : "rejected"} join request #${request.id} (${request.name || request.nodeId})`,
      });
    } catch (error) {
      store.dispatch({
        type: "notice",
        at: Date.now(),
        level: "bad",
        text: `could not ${verb} join request #${request.id}: ${describe(error)}`,
      });
    }
  };

  const onKey = (key: KeyPress) => {
    for (const effect of store.press(key)) {
      if (effect.kind === "quit") quit();
      else void answer(effect);
    }
  };

  const onSignal = () => quit();
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("SIGINT", onSignal);

  const instance = render(h(App, { store, onKey }), {
    stdin,
    stdout,
    exitOnCtrlC: false,
    patchConsole: true,
    maxFps: 30,
  });
  const feeds = runFeeds(clients, {
    dispatch: store.dispatch,
    getState: store.getState,
    signal: abort.signal,
    describe,
  });
  try {
    await Promise.race([done, instance.waitUntilExit()]);
  } finally {
    abort.abort();
    instance.unmount();
    await instance.waitUntilExit().catch(() => undefined);
    stdout.off("resize", onResize);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
    process.off("SIGINT", onSignal);
    restore();
    process.off("exit", restore);
    await feeds.catch(() => undefined);
  }
}
