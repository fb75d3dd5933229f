/** A line split out of a byte stream; `cut` when it was longer than the limit and shortened. */
export interface SplitLine {
  readonly bytes: Buffer;
  readonly cut: boolean;
}

const newline = 0x0a;

/**
 * Splits a byte stream into lines without ever holding more than `maxLineBytes` of an unfinished one:
 * a longer line is handed out cut at the limit, and the rest of it, up to its newline, is dropped.
 * A trailing `\r` is removed.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #skipping = false;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Bytes held of an unfinished line. */
  get pending(): number {
    return this.#partialBytes;
  }

  push(chunk: Buffer): SplitLine[] {
    const lines: SplitLine[] = [];
    let from = 0;
    for (let nl = chunk.indexOf(newline, from); nl >= 0; nl = chunk.indexOf(newline, from)) {
      const piece = chunk.subarray(from, nl);
      from = nl + 1;
      if (this.#skipping) {
        this.#skipping = false;
        continue;
      }
      const whole = this.#partialBytes === 0 ? piece : Buffer.concat([...this.#partial, piece]);
      this.#partial = [];
      this.#partialBytes = 0;
      lines.push(this.#line(whole));
    }
    if (from < chunk.length && !this.#skipping) {
      const rest = chunk.subarray(from);
      // Copied: the caller may reuse its read buffer.
      this.#partial.push(Buffer.from(rest));
      this.#partialBytes += rest.length;
      if (this.#partialBytes > this.#maxLineBytes) {
        const whole = Buffer.concat(this.#partial);
        this.#partial = [];
        this.#partialBytes = 0;
        this.#skipping = true;
        lines.push({ bytes: whole.subarray(0, this.#maxLineBytes), cut: true });
      }
    }
    return lines;
  }

  /** The unfinished line, if any (the stream ended without a final newline). */
  flush(): SplitLine[] {
    if (this.#partialBytes === 0) return [];
    const whole = Buffer.concat(this.#partial);
    this.reset();
    return [this.#line(whole)];
  }

  reset(): void {
    this.#partial = [];
    this.#partialBytes = 0;
    this.#skipping = false;
  }

  #line(bytes: Buffer): SplitLine {
    const trimmed = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.subarray(0, -1) : bytes;
    if (trimmed.length > this.#maxLineBytes)
      return { bytes: trimmed.subarray(0, this.#maxLineBytes), cut: true };
    return { bytes: trimmed, cut: false };
  }
}
