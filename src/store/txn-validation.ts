import { CorralError } from "../base/errors.ts";
import { storeLimits } from "./limits.ts";
import type { Txn } from "./types.ts";

// In unicode mode a class of surrogates matches only unpaired ones, which cannot be encoded as UTF-8.
const loneSurrogate = /[\uD800-\uDFFF]/u;
// NUL breaks C string handling in drivers; U+10FFFF is reserved as the end of a prefix range (see prefixEnd).
function hasForbiddenChar(text: string): boolean {
  return text.includes("\u0000") || text.includes("\u{10FFFF}");
}

export function validateKey(key: unknown, field = "key"): string {
  if (typeof key !== "string" || key === "")
    throw CorralError.invalidArgument(field, "must be a non-empty string");
  validateKeyText(key, field);
  return key;
}

/** A prefix is a key that may be empty (meaning every key). */
export function validatePrefix(prefix: unknown, field = "prefix"): string {
  if (typeof prefix !== "string") throw CorralError.invalidArgument(field, "must be a string");
  validateKeyText(prefix, field);
  return prefix;
}

function validateKeyText(text: string, field: string): void {
  if (loneSurrogate.test(text) || hasForbiddenChar(text))
    throw CorralError.invalidArgument(
      field,
      "holds a character a key cannot (lone surrogate, NUL or U+10FFFF)",
    );
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > storeLimits.maxKeyBytes)
    throw CorralError.invalidArgument(field, `is ${bytes} bytes; the limit is ${storeLimits.maxKeyBytes}`);
}

/** A revision argument: a non-negative safe integer. */
export function validateRevision(revision: unknown, field: string): number {
  if (typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < 0)
    throw CorralError.invalidArgument(field, `must be a non-negative integer, got ${String(revision)}`);
  return revision;
}

export function validateLimit(limit: unknown, field: string): number | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1)
    throw CorralError.invalidArgument(field, `must be a positive integer, got ${String(limit)}`);
  return limit;
}

/**
 * Checks shape and limits, and refuses a txn that writes one key twice or puts a key its own deletePrefix
 * covers: etcd refuses those ("duplicate key given in txn request"), so no implementation may accept them.
 */
export function validateTxn(txn: Txn): void {
  const compares = txn.compares ?? [];
  if (!Array.isArray(txn.ops)) throw CorralError.invalidArgument("txn.ops", "must be an array");
  if (txn.ops.length > storeLimits.maxTxnOps || compares.length > storeLimits.maxTxnOps)
    throw CorralError.invalidArgument(
      "txn",
      `has ${txn.ops.length} ops and ${compares.length} compares; the limit is ${storeLimits.maxTxnOps} of each`,
    );
  compares.forEach((compare, i) => {
    validateKey(compare.key, `txn.compares[${i}].key`);
    validateRevision(compare.modRevision, `txn.compares[${i}].modRevision`);
  });
  const puts = new Set<string>();
  const deletedKeys: string[] = [];
  const deletedPrefixes: string[] = [];
  txn.ops.forEach((op, i) => {
    const field = `txn.ops[${i}]`;
    if (op.type === "put") {
      validateKey(op.key, `${field}.key`);
      if (typeof op.value !== "string")
        throw CorralError.invalidArgument(`${field}.value`, "must be a string");
      const bytes = Buffer.byteLength(op.value, "utf8");
      if (bytes > storeLimits.maxValueBytes)
        throw CorralError.invalidArgument(
          `${field}.value`,
          `is ${bytes} bytes; the limit is ${storeLimits.maxValueBytes}`,
        );
      if (puts.has(op.key)) throw CorralError.invalidArgument(`${field}.key`, `"${op.key}" is written twice`);
      puts.add(op.key);
    } else if (op.type === "delete") {
      deletedKeys.push(validateKey(op.key, `${field}.key`));
    } else if (op.type === "deletePrefix") {
      deletedPrefixes.push(validatePrefix(op.prefix, `${field}.prefix`));
    } else {
      throw CorralError.invalidArgument(`${field}.type`, "must be put, delete or deletePrefix");
    }
  });
  for (const key of puts) {
    if (deletedKeys.includes(key) || deletedPrefixes.some((prefix) => key.startsWith(prefix)))
      throw CorralError.invalidArgument("txn.ops", `"${key}" is both put and deleted in one txn`);
  }
}

/** The smallest string above every key that starts with `prefix` (keys never hold U+10FFFF). */
export function prefixEnd(prefix: string): string {
  return `${prefix}\u{10FFFF}`;
}
