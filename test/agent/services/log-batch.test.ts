import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { encodeLogLines, type LogLine, logBatch } from "../../../src/agent/services/log-batch.ts";
import { MessageSchema, MessagesSchema } from "../../../src/gen/logging_pb.ts";
import { LogStreamMessagesSchema } from "../../../src/gen/pipelines_pb.ts";
import { preEncodedBytesOf } from "../../../src/rpc/pre-encoded.ts";

const line: fc.Arbitrary<LogLine> = fc.record({
  timestamp: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  level: fc.integer({ min: 0, max: 5 }),
  message: fc.string({ unit: "grapheme", maxLength: 40 }),
  data: fc.oneof(fc.constant(""), fc.json({ maxDepth: 1 })),
});

const reference = (lines: readonly LogLine[]) =>
  toBinary(
    MessagesSchema,
    create(MessagesSchema, {
      messages: lines.map((l) => create(MessageSchema, { ...l, timestamp: timestampFromMs(l.timestamp) })),
    }),
  );

describe("log batches written straight to the wire", () => {
  it("are byte for byte what protobuf-es writes for the same messages", () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        assert.deepEqual(encodeLogLines(lines), reference(lines));
      }),
      { numRuns: 300 },
    );
  });

  it("carry their bytes for the grpc listeners and read as ordinary messages everywhere else", () => {
    const lines = [
      { timestamp: 1_700_000_000_123, level: 2, message: "büro ✓", data: "" },
      { timestamp: 5, level: 4, message: "", data: '{"k":"v"}' },
    ];
    const batch = logBatch(LogStreamMessagesSchema, lines);
    const bytes = preEncodedBytesOf(batch);
    assert.ok(bytes !== undefined);
    const decoded = fromBinary(LogStreamMessagesSchema, bytes);
    assert.deepEqual(
      decoded.messages.map((m) => [
        m.message,
        m.level,
        m.data,
        Number(m.timestamp?.seconds),
        m.timestamp?.nanos,
      ]),
      [
        ["büro ✓", 2, "", 1_700_000_000, 123_000_000],
        ["", 4, '{"k":"v"}', 0, 5_000_000],
      ],
    );
    // What the web listener (Connect) encodes by reflection is the same.
    assert.deepEqual(toBinary(LogStreamMessagesSchema, batch), bytes);
    assert.equal(batch.messages[0]?.message, "büro ✓");
  });
});
