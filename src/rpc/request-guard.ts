import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { CorralError } from "../base/errors.ts";
import { shownValue } from "../base/safe-text.ts";
import { defaults } from "../defaults.ts";

/**
 * Checks every request at the edge, before any handler (and so before any forwarding) sees it: a body
 * that is not the method's message, or a text field far longer than anything corral stores, is
 * refused with INVALID_ARGUMENT at once. Each face still validates its own fields; this bound only
 * keeps absurd input from travelling on (into a store key, a status message, a call to the
 * controller over the agent's own link).
 */

/** A request body that did not decode: answered INVALID_ARGUMENT by the handler path, not by grpc-js's INTERNAL. */
export class MalformedRequest {
  constructor(
    readonly typeName: string,
    readonly reason: string,
  ) {}
}

/** Fields whose text is a document (a pipeline's JSON, a PEM, a file's content): bounded by the message size only. */
const documentFields = new Set(["json_config", "content", "pem", "csr_pem"]);

export interface GuardOptions {
  /** Characters (UTF-16 code units) a text field may hold. */
  readonly maxStringChars?: number;
  /**
   * When set, a top-level `node_id` or `node` field (a node's id or name) longer than this many
   * characters is refused: no node is called that, so the call could only fail further on. Set where
   * calls are passed on (an agent's local API), so that nothing absurd travels over the agent's link.
   */
  readonly maxNodeReferenceChars?: number;
}

const nodeReferenceFields = new Set(["node_id", "node"]);

/** Throws INVALID_ARGUMENT for a malformed body or an oversized text field; returns the request otherwise. */
export function checkRequest<T>(schema: DescMessage, request: T, options: GuardOptions = {}): T {
  if (request instanceof MalformedRequest) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `the request is not a valid ${request.typeName} message: ${request.reason}`,
    );
  }
  const max = options.maxStringChars ?? defaults.rpc.maxStringFieldChars;
  const found = oversized(schema, request as Record<string, unknown>, max, "", 0);
  if (found !== undefined) {
    throw CorralError.invalidArgument(
      found.path,
      `is ${found.length} characters; a text field may hold at most ${max}`,
    );
  }
  if (options.maxNodeReferenceChars !== undefined)
    checkNodeReferences(schema, request as Record<string, unknown>, options.maxNodeReferenceChars);
  return request;
}

function checkNodeReferences(schema: DescMessage, request: Record<string, unknown>, max: number): void {
  for (const field of schema.fields) {
    if (!nodeReferenceFields.has(field.name) || field.fieldKind !== "scalar") continue;
    const value = fieldValue(field, request);
    if (typeof value !== "string" || value.length <= max) continue;
    const length = codePoints(value);
    if (length > max) {
      throw CorralError.invalidArgument(
        field.name,
        `is ${length} characters; no node's id or name is longer than ${max}`,
      );
    }
  }
}

function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++, count++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) i++;
  }
  return count;
}

interface Oversized {
  readonly path: string;
  readonly length: number;
}

/** protobuf-es messages nest at most this deep when decoded (its default recursion limit). */
const maxDepth = 100;

function oversized(
  schema: DescMessage,
  message: Record<string, unknown>,
  max: number,
  prefix: string,
  depth: number,
): Oversized | undefined {
  if (depth > maxDepth || message === null || typeof message !== "object") return undefined;
  for (const field of schema.fields) {
    const value = fieldValue(field, message);
    if (value === undefined) continue;
    const path = `${prefix}${field.name}`;
    const found = oversizedValue(field, value, max, path, depth);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A field's value; members of a oneof live under the oneof's name as `{ case, value }`. */
function fieldValue(field: DescField, message: Record<string, unknown>): unknown {
  if (field.oneof === undefined) return message[field.localName];
  const chosen = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
  return chosen?.case === field.localName ? chosen.value : undefined;
}

function oversizedValue(
  field: DescField,
  value: unknown,
  max: number,
  path: string,
  depth: number,
): Oversized | undefined {
  const text = (candidate: unknown, at: string): Oversized | undefined =>
    typeof candidate === "string" && candidate.length > max && !documentFields.has(field.name)
      ? { path: shownValue(at, 120), length: candidate.length }
      : undefined;
  switch (field.fieldKind) {
    case "scalar":
      return text(value, path);
    case "enum":
      return undefined;
    case "message":
      return oversized(field.message, value as Record<string, unknown>, max, `${path}.`, depth + 1);
    case "list": {
      const items = value as readonly unknown[];
      for (let i = 0; i < items.length; i++) {
        const at = `${path}[${i}]`;
        const found =
          field.listKind === "message"
            ? oversized(field.message, items[i] as Record<string, unknown>, max, `${at}.`, depth + 1)
            : text(items[i], at);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    case "map": {
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (key.length > max) return { path: `${path} key`, length: key.length };
        const at = `${path}["${key}"]`;
        const found =
          field.mapKind === "message"
            ? oversized(field.message, item as Record<string, unknown>, max, `${at}.`, depth + 1)
            : text(item, at);
        if (found !== undefined) return found;
      }
      return undefined;
    }
  }
}
