import { readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  create,
  type DescField,
  type DescMessage,
  type DescService,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";

/**
 * Requests for the fuzzer, built from the protobuf descriptors alone: any message of any method, its
 * text fields filled with what breaks naive code (Unicode, control characters, unpaired surrogates,
 * huge strings, percent signs), or a body of random bytes that is no valid message at all.
 */

/** Every service of the generated code, by its name on the wire (reflection lists names only). */
export async function generatedServices(): Promise<Map<string, DescService>> {
  const root = join(import.meta.dirname, "../../src/gen");
  const files = (await readdir(root, { recursive: true })).filter((file) => file.endsWith("_pb.ts"));
  const services = new Map<string, DescService>();
  for (const file of files) {
    const module = (await import(join(root, file))) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      const candidate = value as Partial<DescService> | undefined;
      if (candidate?.kind === "service" && typeof candidate.typeName === "string")
        services.set(candidate.typeName, candidate as DescService);
    }
  }
  return services;
}

const awkward = [
  "",
  " ",
  "x\ny",
  "Büro-7",
  "%",
  "%41%zz",
  "\u0000",
  "\u001b[31mred\u001b[0m",
  "\r\n\r\n",
  "\u2028\u2029",
  "\u202e",
  "\ud800",
  "\udfff lone",
  "😀",
  "../../etc/passwd",
  "/etc/shadow",
  "{{ .x }}",
  "' OR 1=1 --",
  "__proto__",
  "constructor",
  "-",
  "--help",
  "a".repeat(129),
];

const loneSurrogates = fc.string({
  unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
  maxLength: 4,
});

/** Huge strings are repeated patterns: generating 100 000 random characters per case costs too much. */
const huge = fc
  .tuple(
    fc.constantFrom("x", "é", "😀", "\n", "%", "\u0007", "ab\u0000"),
    fc.constantFrom(1_000, 7_000, 16_385, 100_000, 300_000),
  )
  .map(([pattern, length]) => pattern.repeat(Math.ceil(length / pattern.length)));

export const fuzzText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...awkward) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: loneSurrogates },
  { weight: 1, arbitrary: huge },
);

/**
 * Fields that name a place to connect to get loopback or unparseable values only: the fuzzer must not
 * make a controller or agent dial (or resolve) anything beyond this machine.
 */
const addressFields = new Set([
  "address",
  "host",
  "new_host",
  "known_hosts",
  "known_nodes",
  "seed_nodes",
  "hub_server_address",
  "server_url",
  "tcp",
  "member",
]);
const addressText = fc.constantFrom(
  "",
  ":",
  "[",
  "::::",
  "127.0.0.1:",
  "127.0.0.1:1",
  "127.0.0.1:65536",
  "[::1]:1",
  "http://127.0.0.1:1",
  "https://127.0.0.1:1/x\ny",
  "127.0.0.1:1\n",
  "127.0.0.1:-5",
);

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const int64 = fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(0n, -1n));
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

function scalar(type: ScalarType, text: fc.Arbitrary<string>): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
      return fc.double();
    case ScalarType.FLOAT:
      return fc.float();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64;
  }
}

/** An init object for `schema`: each field present or not, nested messages up to `depth` deep. */
export function messageInit(schema: DescMessage, depth = 3): fc.Arbitrary<Record<string, unknown>> {
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) {
    if (field.oneof !== undefined) continue;
    const value = fieldValue(field, depth);
    if (value !== undefined) parts[field.localName] = value;
  }
  for (const oneof of schema.oneofs) {
    const members = oneof.fields.flatMap((field) => {
      const value = fieldValue(field, depth);
      return value === undefined ? [] : [value.map((v) => ({ case: field.localName, value: v }))];
    });
    if (members.length > 0) parts[oneof.localName] = fc.oneof(...members);
  }
  return fc.record(parts, { requiredKeys: [] });
}

function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> | undefined {
  const text = addressFields.has(field.name) ? addressText : fuzzText;
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field.scalar, text);
    case "enum":
      return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), int32);
    case "message":
      if (isWrapperDesc(field.message)) {
        const inner = field.message.fields[0];
        return inner?.fieldKind === "scalar" ? scalar(inner.scalar, text) : undefined;
      }
      return depth <= 0 ? undefined : messageInit(field.message, depth - 1);
    case "list": {
      const item =
        field.listKind === "scalar"
          ? scalar(field.scalar, text)
          : field.listKind === "enum"
            ? fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), int32)
            : depth <= 0
              ? undefined
              : messageInit(field.message, depth - 1);
      return item === undefined ? undefined : fc.array(item, { maxLength: 3 });
    }
    case "map": {
      const value =
        field.mapKind === "scalar"
          ? scalar(field.scalar, fuzzText)
          : field.mapKind === "enum"
            ? fc.constantFrom(...field.enum.values.map((v) => v.number))
            : depth <= 0
              ? undefined
              : messageInit(field.message, depth - 1);
      if (value === undefined) return undefined;
      const key = field.mapKey === ScalarType.STRING ? fuzzText : scalar(field.mapKey, fuzzText);
      return fc
        .array(fc.tuple(key, value), { maxLength: 3 })
        .map((entries) => Object.fromEntries(entries.map(([k, v]) => [String(k), v])));
    }
  }
}

/** A request body: a message of the method's input type (usually) or random bytes. */
export function requestBody(input: DescMessage): fc.Arbitrary<{ kind: "message" | "bytes"; body: Buffer }> {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: messageInit(input).map((init) => ({
        kind: "message" as const,
        body: Buffer.from(toBinary(input, create(input, init as never))),
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ minLength: 1, maxLength: 256 })
        .map((bytes) => ({ kind: "bytes" as const, body: Buffer.from(bytes) })),
    },
  );
}
