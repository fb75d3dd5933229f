/**
 * Exponential backoff with full jitter (a random wait between 0 and the exponential bound): many
 * agents reconnecting after a controller restart spread out instead of arriving together.
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(initialMs: number, maxMs: number, random: () => number = Math.random) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  next(): number {
    const bound = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(this.#random() * bound);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
