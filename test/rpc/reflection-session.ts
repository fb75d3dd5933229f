import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  type ServerReflectionResponse as ResponseV1,
  ServerReflection as ServerReflectionV1,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import {
  type ServerReflectionResponse as ResponseV1alpha,
  ServerReflection as ServerReflectionV1alpha,
} from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { plaintextClient } from "../helpers/clients.ts";

/** A reflection request of either version, as a plain init object. */
export interface ReflectionQuery {
  host?: string;
  messageRequest:
    | { case: "fileByFilename"; value: string }
    | { case: "fileContainingSymbol"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: "allExtensionNumbersOfType"; value: string }
    | { case: "listServices"; value: string };
}

export type ReflectionResponse = ResponseV1 | ResponseV1alpha;

/** An iterable the test pushes requests into; iteration ends after `close()`. */
class RequestQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #closed = false;
  #wake: (() => void) | undefined;

  push(item: T): void {
    assert.ok(!this.#closed, "push after close");
    this.#items.push(item);
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) yield item;
      else if (this.#closed) return;
      else
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      this.#wake = undefined;
    }
  }
}

/**
 * One open ServerReflectionInfo stream, driven request by response (what grpcurl does). Every call
 * carries a deadline, so no step can wait for ever.
 */
export class ReflectionSession {
  static readonly #open = new Set<ReflectionSession>();
  readonly #queue = new RequestQueue<ReflectionQuery>();
  readonly #abort = new AbortController();
  readonly #responses: AsyncIterator<ReflectionResponse>;

  constructor(version: "v1" | "v1alpha", port: number, timeoutMs = 10_000) {
    const options = { timeoutMs, signal: this.#abort.signal };
    const responses: AsyncIterable<ReflectionResponse> =
      version === "v1"
        ? plaintextClient(ServerReflectionV1, port).serverReflectionInfo(this.#queue, options)
        : plaintextClient(ServerReflectionV1alpha, port).serverReflectionInfo(this.#queue, options);
    this.#responses = responses[Symbol.asyncIterator]();
    ReflectionSession.#open.add(this);
  }

  /** Cancels every session a test left open (after a failed assertion, say). */
  static cancelAll(): void {
    for (const session of ReflectionSession.#open) session.cancel();
  }

  async ask(query: ReflectionQuery): Promise<ReflectionResponse> {
    this.#queue.push(query);
    const step = await this.#responses.next();
    assert.ok(step.done !== true, "the reflection stream ended early");
    return step.value;
  }

  /** The next response, without sending anything (to see the stream end or fail). */
  async next(): Promise<IteratorResult<ReflectionResponse>> {
    return this.#responses.next();
  }

  /** Ends the request side and expects the server to end the stream cleanly. */
  async end(): Promise<void> {
    ReflectionSession.#open.delete(this);
    this.#queue.close();
    const step = await this.#responses.next();
    assert.equal(step.done, true, "the stream did not end after the requests did");
  }

  cancel(): void {
    ReflectionSession.#open.delete(this);
    this.#queue.close();
    this.#abort.abort();
    // Read the failure out, so that the client library clears its deadline timer.
    this.#responses.next().catch(() => undefined);
  }

  async services(): Promise<string[]> {
    const response = await this.ask({ messageRequest: { case: "listServices", value: "" } });
    assert.equal(response.messageResponse.case, "listServicesResponse");
    return response.messageResponse.value.service.map((s) => s.name);
  }

  async files(messageRequest: ReflectionQuery["messageRequest"]): Promise<FileDescriptorProto[]> {
    return decodeFiles(await this.ask({ messageRequest }));
  }
}

export function decodeFiles(response: ReflectionResponse): FileDescriptorProto[] {
  const answer = response.messageResponse;
  assert.equal(
    answer.case,
    "fileDescriptorResponse",
    `expected files, got ${answer.case}: ${answer.case === "errorResponse" ? answer.value.errorMessage : ""}`,
  );
  return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

export function errorOf(response: ReflectionResponse): { code: number; message: string } {
  const answer = response.messageResponse;
  assert.equal(answer.case, "errorResponse");
  return { code: answer.value.errorCode, message: answer.value.errorMessage };
}
