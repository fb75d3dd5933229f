import { CorralError } from "../base/errors.ts";
import type { MetadataValue } from "../core/nodes/node.ts";

/**
 * The typed-metadata oneof that corral.v1.MetadataValue and NanoPing's NodeMetadataItem share, case
 * for case: one conversion serves both messages.
 */
export type MetadataOneof =
  | { case: "stringValue"; value: string }
  | { case: "bytesValue"; value: Uint8Array }
  | { case: "intValue"; value: bigint }
  | { case: "uintValue"; value: bigint }
  | { case: "doubleValue"; value: number }
  | { case: "floatValue"; value: number }
  | { case: "boolValue"; value: boolean }
  | { case: undefined; value?: undefined };

const caseOfKind = {
  string: "stringValue",
  bytes: "bytesValue",
  int: "intValue",
  uint: "uintValue",
  double: "doubleValue",
  float: "floatValue",
  bool: "boolValue",
} as const;

const kindOfCase = Object.fromEntries(
  Object.entries(caseOfKind).map(([kind, name]) => [name, kind]),
) as Record<(typeof caseOfKind)[keyof typeof caseOfKind], MetadataValue["kind"]>;

export function metadataOneof(value: MetadataValue): MetadataOneof {
  return { case: caseOfKind[value.kind], value: value.value } as MetadataOneof;
}

export function metadataFromOneof(oneof: MetadataOneof, field: string): MetadataValue {
  if (oneof.case === undefined) {
    throw CorralError.invalidArgument(
      field,
      "has no value; set one of string_value, bytes_value, int_value, …",
    );
  }
  return { kind: kindOfCase[oneof.case], value: oneof.value } as MetadataValue;
}
