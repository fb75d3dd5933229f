import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Level, type Message, MessageSchema } from "../../gen/logging_pb.ts";
import { type PreEncoded, preEncodedBytes } from "../../rpc/pre-encoded.ts";

/** Lines per log message: a burst goes out as a few large messages, not one per line. */
export const logBatchLines = 2000;

/** One NanoPing log `Message` before it is a message. */
export interface LogLine {
  readonly timestamp: number;
  readonly level: Level;
  readonly message: string;
  /** The line's structured fields as JSON, or "". */
  readonly data: string;
}

/** The schemas whose only field is `repeated nanopinggrpc.logging.Message messages = 1`. */
type BatchSchema = DescMessage & { readonly typeName: string };

/**
 * A batch of log lines as `schema` (NanoPing's `LogStreamMessages` or `Messages`) that also carries its
 * wire bytes, written straight from the lines: the grpc listeners send those, so a burst of lines
 * costs no message object per line and no reflective encoding (which cost more than everything else
 * on the path). The `messages` field is built only if something reads it (the web listener, an
 * in-process caller).
 */
export function logBatch<S extends BatchSchema>(schema: S, lines: readonly LogLine[]): MessageShape<S> {
  let messages: Message[] | undefined;
  const batch = {
    $typeName: schema.typeName,
    get messages(): Message[] {
      messages ??= lines.map(
        (line) =>
          create(MessageSchema, {
            timestamp: timestampFromMs(line.timestamp),
            level: line.level,
            message: line.message,
            data: line.data,
          }) as Message,
      );
      return messages;
    },
    set messages(value: Message[]) {
      messages = value;
    },
    [preEncodedBytes]: encodeLogLines(lines),
  } satisfies PreEncoded & { $typeName: string; messages: Message[] };
  return batch as unknown as MessageShape<S>;
}

/** `repeated Message messages = 1`, field by field as protobuf-es would write it (defaults left out). */
export function encodeLogLines(lines: readonly LogLine[]): Uint8Array {
  const writer = new BinaryWriter();
  for (const line of lines) {
    writer.tag(1, WireType.LengthDelimited).fork();
    const seconds = Math.floor(line.timestamp / 1000);
    const nanos = (line.timestamp - seconds * 1000) * 1_000_000;
    writer.tag(1, WireType.LengthDelimited).fork();
    if (seconds !== 0) writer.tag(1, WireType.Varint).int64(seconds);
    if (nanos !== 0) writer.tag(2, WireType.Varint).int32(nanos);
    writer.join();
    if (line.level !== 0) writer.tag(2, WireType.Varint).int32(line.level);
    if (line.message !== "") writer.tag(3, WireType.LengthDelimited).string(line.message);
    if (line.data !== "") writer.tag(4, WireType.LengthDelimited).string(line.data);
    writer.join();
  }
  return writer.finish();
}
