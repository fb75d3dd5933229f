import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.ts";
import { CorralError, type ErrorCode } from "../../src/base/errors.ts";
import { NodeRegistry, type NodeRegistryOptions } from "../../src/core/nodes/node-registry.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";

export interface CoreFixture extends AsyncDisposable {
  store: SqliteStore;
  clock: ManualClock;
  registry: NodeRegistry;
}

/** A registry over an in-memory store and a clock that moves only when told. */
export async function makeCore(options: NodeRegistryOptions = {}): Promise<CoreFixture> {
  const store = await SqliteStore.open({ path: ":memory:" });
  const clock = new ManualClock();
  return {
    store,
    clock,
    registry: new NodeRegistry(store, clock, options),
    [Symbol.asyncDispose]: () => store.close(),
  };
}

export async function rejectsWith(
  promise: Promise<unknown>,
  code: ErrorCode,
  ...mentions: string[]
): Promise<CorralError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof CorralError, `expected CorralError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const mention of mentions)
    assert.ok(caught.message.includes(mention), `"${caught.message}" does not mention "${mention}"`);
  return caught;
}
