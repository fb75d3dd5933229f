import { type KeyPress, press } from "./keys.ts";
import { type Action, type Effect, initialState, type TuiState } from "./model.ts";
import { reduce } from "./reducer.ts";

/** Holds the state; the feeds dispatch into it, the screen subscribes to it. */
export class TuiStore {
  #state: TuiState;
  readonly #listeners = new Set<() => void>();
  readonly #now: () => number;

  constructor(server: string, columns: number, rows: number, now: () => number = Date.now) {
    this.#state = initialState(server, columns, rows);
    this.#now = now;
  }

  readonly getState = (): TuiState => this.#state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  readonly dispatch = (action: Action): void => {
    this.#set(reduce(this.#state, action));
  };

  /**
   * Applies a key; returns what it asks the outside world to do. Characters that arrive together (fast
   * typing, a paste, tmux send-keys) are pressed one by one, so that "/node" starts a filter and types
   * "node" into it.
   */
  readonly press = (key: KeyPress): Effect[] => {
    const keys: KeyPress[] =
      key.name === "char" ? [...key.char].map((char) => ({ name: "char", char })) : [key];
    const effects: Effect[] = [];
    let state = this.#state;
    for (const one of keys) {
      const result = press(state, one, this.#now());
      state = result.state;
      if (result.effect !== undefined) effects.push(result.effect);
      if (result.effect?.kind === "quit") break;
    }
    this.#set(state);
    return effects;
  };

  #set(state: TuiState): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of this.#listeners) listener();
  }
}
