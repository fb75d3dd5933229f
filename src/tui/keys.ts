import { type Effect, type Tab, type TuiState, tabs } from "./model.ts";
import { reduce } from "./reducer.ts";
import {
  listHeight,
  requestState,
  rowKeys,
  scrollWindow,
  selectedIndex,
  visibleRequests,
} from "./selectors.ts";

/** A key press, independent of the terminal library. */
export type KeyPress =
  | {
      readonly name:
        | "tab"
        | "backtab"
        | "up"
        | "down"
        | "left"
        | "right"
        | "pageup"
        | "pagedown"
        | "home"
        | "end"
        | "escape"
        | "return"
        | "backspace"
        | "ctrl-c";
    }
  | { readonly name: "char"; readonly char: string };

/** The fields of Ink's `Key` this needs (structurally, so this module does not load Ink). */
export interface InkKey {
  upArrow: boolean;
  downArrow: boolean;
  leftArrow: boolean;
  rightArrow: boolean;
  pageDown: boolean;
  pageUp: boolean;
  home?: boolean;
  end?: boolean;
  return: boolean;
  escape: boolean;
  ctrl: boolean;
  shift: boolean;
  tab: boolean;
  backspace: boolean;
  delete: boolean;
  meta: boolean;
}

/** The keys in text that arrived in one piece (a paste, fast typing, tmux send-keys "/abc" Enter). */
function keysInText(text: string): KeyPress[] {
  const out: KeyPress[] = [];
  let chars = "";
  const flush = () => {
    if (chars !== "") out.push({ name: "char", char: chars });
    chars = "";
  };
  for (const ch of text) {
    const special: KeyPress | undefined =
      ch === "\r" || ch === "\n"
        ? { name: "return" }
        : ch === "\t"
          ? { name: "tab" }
          : ch === "\u007f" || ch === "\b"
            ? { name: "backspace" }
            : ch === "\u001b"
              ? { name: "escape" }
              : ch === "\u0003"
                ? { name: "ctrl-c" }
                : undefined;
    if (special !== undefined) {
      flush();
      out.push(special);
    } else if (ch >= " " && !(ch >= "\u0080" && ch <= "\u009f")) chars += ch;
  }
  flush();
  return out;
}

/** Ink's (input, key) as key presses (none for keys this UI ignores). */
export function fromInk(input: string, key: InkKey): KeyPress[] {
  if (key.ctrl && input === "c") return [{ name: "ctrl-c" }];
  if (key.tab) return [{ name: key.shift ? "backtab" : "tab" }];
  if (key.upArrow) return [{ name: "up" }];
  if (key.downArrow) return [{ name: "down" }];
  if (key.leftArrow) return [{ name: "left" }];
  if (key.rightArrow) return [{ name: "right" }];
  if (key.pageUp) return [{ name: "pageup" }];
  if (key.pageDown) return [{ name: "pagedown" }];
  if (key.home) return [{ name: "home" }];
  if (key.end) return [{ name: "end" }];
  if (key.return) return [{ name: "return" }];
  if (key.escape) return [{ name: "escape" }];
  // Terminals send DEL (0x7f) for the Backspace key, which Ink reports as `delete`.
  if (key.backspace || key.delete) return [{ name: "backspace" }];
  if (key.ctrl) return [];
  return keysInText(input);
}

export interface KeyResult {
  readonly state: TuiState;
  readonly effect?: Effect;
}

function withView(state: TuiState, tab: Tab, change: Partial<TuiState["views"][Tab]>): TuiState {
  return { ...state, views: { ...state.views, [tab]: { ...state.views[tab], ...change } } };
}

function switchTab(state: TuiState, tab: Tab): TuiState {
  return { ...state, tab, editingFilter: false };
}

/** Moves the selection of the current tab by `delta` rows (or to an end), keeping it in view. */
function move(state: TuiState, now: number, delta: number | "home" | "end"): TuiState {
  const tab = state.tab;
  const keys = rowKeys(state, tab, now);
  if (keys.length === 0) return state;
  const from = selectedIndex(state, tab, keys);
  const to =
    delta === "home"
      ? 0
      : delta === "end"
        ? keys.length - 1
        : Math.max(0, Math.min(keys.length - 1, from + delta));
  const height = listHeight(state.rows);
  const offset = scrollWindow(state.views[tab].offset, to, keys.length, height);
  // Events at the newest line follow the log again.
  const selected = tab === "events" && to === keys.length - 1 ? undefined : keys[to];
  return withView(state, tab, { selected, offset });
}

function setFilter(state: TuiState, filter: string): TuiState {
  return withView(state, state.tab, { filter, offset: 0 });
}

function answer(state: TuiState, now: number, accept: boolean): KeyResult {
  const verb = accept ? "accept" : "reject";
  if (state.tab !== "requests") {
    return {
      state: reduce(state, {
        type: "notice",
        at: now,
        level: "info",
        text: `${verb}: go to the Requests tab (3) and pick a join request`,
      }),
    };
  }
  const requests = visibleRequests(state, now);
  const request =
    requests[
      selectedIndex(
        state,
        "requests",
        requests.map((r) => r.id),
      )
    ];
  if (request === undefined)
    return {
      state: reduce(state, { type: "notice", at: now, level: "info", text: "no join request selected" }),
    };
  const current = requestState(request, now);
  if (current !== "pending") {
    return {
      state: reduce(state, {
        type: "notice",
        at: now,
        level: "warn",
        text: `join request #${request.id} (${request.name}) is already ${current}`,
      }),
    };
  }
  return { state, effect: { kind: "answer", request, accept } };
}

/** What a key does: a new state, and maybe something for the outside world to do. */
export function press(state: TuiState, key: KeyPress, now: number): KeyResult {
  if (key.name === "ctrl-c") return { state, effect: { kind: "quit" } };
  const page = Math.max(1, listHeight(state.rows) - 1);
  const tabIndex = tabs.indexOf(state.tab);
  const nextTab = (step: number) => tabs[(tabIndex + step + tabs.length) % tabs.length] ?? "nodes";

  if (state.editingFilter) {
    const filter = state.views[state.tab].filter;
    switch (key.name) {
      case "escape":
        return { state: { ...setFilter(state, ""), editingFilter: false } };
      case "return":
        return { state: { ...state, editingFilter: false } };
      case "backspace":
        return { state: setFilter(state, [...filter].slice(0, -1).join("")) };
      case "char":
        return { state: setFilter(state, filter + key.char) };
      default:
        break; // movement and tabs work while typing
    }
  }

  switch (key.name) {
    case "tab":
    case "right":
      return { state: switchTab(state, nextTab(1)) };
    case "backtab":
    case "left":
      return { state: switchTab(state, nextTab(-1)) };
    case "up":
      return { state: move(state, now, -1) };
    case "down":
      return { state: move(state, now, 1) };
    case "pageup":
      return { state: move(state, now, -page) };
    case "pagedown":
      return { state: move(state, now, page) };
    case "home":
      return { state: move(state, now, "home") };
    case "end":
      return { state: move(state, now, "end") };
    case "escape":
      return { state: { ...setFilter(state, ""), notice: undefined } };
    case "return":
    case "backspace":
      return { state };
    case "char":
      break;
  }

  switch (key.char) {
    case "q":
      return { state, effect: { kind: "quit" } };
    case "1":
    case "2":
    case "3":
    case "4":
      return { state: switchTab(state, tabs[Number(key.char) - 1] ?? "nodes") };
    case "j":
      return { state: move(state, now, 1) };
    case "k":
      return { state: move(state, now, -1) };
    case "g":
      return { state: move(state, now, "home") };
    case "G":
      return { state: move(state, now, "end") };
    case "l":
      return { state: switchTab(state, nextTab(1)) };
    case "h":
      return { state: switchTab(state, nextTab(-1)) };
    case "/":
      return { state: { ...state, editingFilter: true } };
    case "a":
      return answer(state, now, true);
    case "r":
      return answer(state, now, false);
    default:
      return { state };
  }
}

/** For the footer: what each key does. */
export const keyHelp = [
  ["Tab/1-4", "tabs"],
  ["↑↓/jk", "move"],
  ["/", "filter"],
  ["Esc", "clear"],
  ["a/r", "accept/reject"],
  ["q", "quit"],
] as const;
