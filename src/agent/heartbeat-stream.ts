import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { AgentService, HeartbeatRequestSchema, HeartbeatResponse } from "../gen/corral/v1/agent_pb.ts";

type HeartbeatRequest = MessageInitShape<typeof HeartbeatRequestSchema>;

/**
 * One AgentService/HeartbeatStream to one controller. `send` puts a heartbeat on the stream and waits
 * for its answer; the caller sends the next only after that, so the outgoing queue holds at most one
 * message. Answers are read as they come, so when the controller ends the stream (draining, or the
 * stream's max age) this side ends too at once rather than at the next heartbeat: a half-open stream
 * would hold the controller's shutdown. Any failure, a missing answer or the end closes the stream for
 * good; the caller opens another (or falls back to a call, which fails over between controllers).
 */
export class HeartbeatStream {
  /** The controller it goes to, and the transport it was opened on (new credentials mean a new stream). */
  readonly address: string;
  readonly opener: object;
  readonly #abort = new AbortController();
  readonly #outbox = new OneSlotOutbox<HeartbeatRequest>();
  #waiting:
    | { resolve: (answer: HeartbeatResponse | undefined) => void; reject: (error: unknown) => void }
    | undefined;
  /** How the stream ended, for a `send` that comes after. */
  #ended: { error?: unknown } | undefined;

  readonly #reading: Promise<void>;
  readonly #onLost: (() => void) | undefined;

  /**
   * `signal` cancels the stream (the controller takes that as the node gone: use `goodbye` for a clean
   * stop); `onLost` hears of an end with an error (the connection dropped), so the caller can reconnect
   * before the controller's grace for a lost stream runs out.
   */
  constructor(
    client: Client<typeof AgentService>,
    target: { readonly address: string; readonly opener: object },
    signal: AbortSignal,
    onLost?: () => void,
  ) {
    this.address = target.address;
    this.opener = target.opener;
    this.#onLost = onLost;
    const answers = client.heartbeatStream(this.#outbox, {
      signal: AbortSignal.any([signal, this.#abort.signal]),
      // The stream lives for minutes; each answer has its own deadline instead.
      timeoutMs: 0,
    });
    this.#reading = this.#read(answers);
  }

  /**
   * A clean end: this side closes, and the controller, seeing the stream end rather than drop, does not
   * take the node for gone. Waits up to `timeoutMs` for the controller to end its side, then cancels.
   */
  async goodbye(timeoutMs: number): Promise<void> {
    if (this.#ended === undefined) this.#outbox.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#reading,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.#end(undefined);
  }

  get closed(): boolean {
    return this.#ended !== undefined;
  }

  /** The controller's answer, or undefined when it ended the stream. */
  async send(request: HeartbeatRequest, answerTimeoutMs: number): Promise<HeartbeatResponse | undefined> {
    if (this.#ended !== undefined) {
      if (this.#ended.error !== undefined) throw this.#ended.error;
      return undefined;
    }
    const answer = new Promise<HeartbeatResponse | undefined>((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
    this.#outbox.put(request);
    const timer = setTimeout(() => {
      this.#end(
        new ConnectError(
          `the controller did not answer a heartbeat in ${answerTimeoutMs} ms`,
          Code.DeadlineExceeded,
        ),
      );
    }, answerTimeoutMs);
    try {
      return await answer;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#end(undefined);
  }

  async #read(answers: AsyncIterable<HeartbeatResponse>): Promise<void> {
    try {
      for await (const answer of answers) {
        const waiting = this.#waiting;
        this.#waiting = undefined;
        waiting?.resolve(answer);
      }
      this.#end(undefined);
    } catch (error) {
      const open = this.#ended === undefined;
      this.#end(error);
      if (open) this.#onLost?.();
    }
  }

  #end(error: unknown): void {
    if (this.#ended !== undefined) return;
    this.#ended = error === undefined ? {} : { error };
    this.#outbox.end();
    this.#abort.abort();
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (error === undefined) waiting?.resolve(undefined);
    else waiting?.reject(error);
  }
}

/** The request side of the stream: one message at a time, handed over when the transport asks. */
class OneSlotOutbox<T> implements AsyncIterable<T> {
  #item: { value: T } | undefined;
  #ended = false;
  #wake: (() => void) | undefined;

  put(value: T): void {
    if (this.#item !== undefined) throw new Error("a heartbeat is already waiting to be sent");
    this.#item = { value };
    this.#notify();
  }

  end(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const item = this.#item;
      if (item !== undefined) {
        this.#item = undefined;
        yield item.value;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}
