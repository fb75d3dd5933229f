/** A bounded FIFO of packets: `push` waits while full, `pull` waits while empty. */
export class Channel {
  readonly #items: Buffer[] = [];
  readonly #capacity: number;
  #space: (() => void) | undefined;
  #data: (() => void) | undefined;
  closed = false;
  constructor(capacity: number) {
    this.#capacity = capacity;
  }
  async push(packet: Buffer): Promise<void> {
    while (this.#items.length >= this.#capacity && !this.closed)
      await new Promise<void>((resolve) => {
        this.#space = resolve;
      });
    this.#items.push(packet);
    const wake = this.#data;
    this.#data = undefined;
    wake?.();
  }
  async pull(): Promise<Buffer | undefined> {
    while (this.#items.length === 0) {
      if (this.closed) return undefined;
      await new Promise<void>((resolve) => {
        this.#data = resolve;
      });
    }
    const packet = this.#items.shift();
    const wake = this.#space;
    this.#space = undefined;
    wake?.();
    return packet;
  }
  /** Queues without waiting; false (the packet dropped) when the channel is full or closed. */
  offer(packet: Buffer): boolean {
    if (this.closed || this.#items.length >= this.#capacity) return false;
    this.#items.push(packet);
    const wake = this.#data;
    this.#data = undefined;
    wake?.();
    return true;
  }
  close(): void {
    this.closed = true;
    for (const wake of [this.#space, this.#data]) wake?.();
    this.#space = undefined;
    this.#data = undefined;
  }
}
