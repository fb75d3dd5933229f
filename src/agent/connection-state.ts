/** NanoPing's connection states, as the agent's hub client reports them. */
export type ConnectionStateName = "UNAUTHENTICATED" | "DISCONNECTED" | "CONNECTED";

type Listener = (state: ConnectionStateName) => void;

/** The current state and everyone who wants to hear when it changes. */
export class ConnectionStateCell {
  #state: ConnectionStateName;
  readonly #listeners = new Set<Listener>();

  constructor(initial: ConnectionStateName) {
    this.#state = initial;
  }

  get value(): ConnectionStateName {
    return this.#state;
  }

  set(state: ConnectionStateName): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state);
  }

  /**
   * The current state first, then every change, until `signal` aborts. A slow reader sees the latest
   * state rather than a backlog: only the newest unread state is kept.
   */
  async *watch(signal: AbortSignal): AsyncGenerator<ConnectionStateName> {
    let pending: ConnectionStateName | undefined = this.#state;
    let wake: (() => void) | undefined;
    const listener: Listener = (state) => {
      pending = state;
      wake?.();
    };
    const onAbort = () => wake?.();
    this.#listeners.add(listener);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (pending !== undefined) {
          const next: ConnectionStateName = pending;
          pending = undefined;
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.#listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }
}
