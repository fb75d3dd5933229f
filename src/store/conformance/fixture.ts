import assert from "node:assert/strict";
import { CorralError, type ErrorCode } from "../../base/errors.ts";
import type { Store } from "../store.ts";
import type { StoreEvent } from "../types.ts";

export interface StoreFixture {
  /** A store holding nothing, used by this test alone. */
  store: Store;
  /** Closes `store` and opens the same data again; absent where the store cannot outlive its object. */
  reopen?: () => Promise<Store>;
  /** Closes whatever is open and removes what the fixture created. */
  cleanup: () => Promise<void>;
}

export type MakeStore = () => Promise<StoreFixture>;

/** Per case: a watch that never delivers fails the case instead of hanging the run. */
export const caseOptions = { timeout: 15_000 } as const;

export async function withStore(
  make: MakeStore,
  body: (fixture: StoreFixture) => Promise<void>,
): Promise<void> {
  const fixture = await make();
  try {
    await body(fixture);
  } finally {
    await fixture.cleanup();
  }
}

export async function put(store: Store, key: string, value: string): Promise<number> {
  const result = await store.commit({ ops: [{ type: "put", key, value }] });
  assert.equal(result.succeeded, true, `put ${key} failed`);
  return result.revision;
}

/** Asserts that `promise` rejects with a CorralError of `code` whose message holds every `mentions`. */
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
  assert.ok(caught instanceof CorralError, `expected a CorralError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const mention of mentions)
    assert.match(caught.message, new RegExp(escapeRegExp(mention)), caught.message);
  return caught;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Pulls batches until `count` events came; each pull must bring at least one, so this ends. */
export async function takeEvents(
  iterator: AsyncIterator<StoreEvent[]>,
  count: number,
): Promise<StoreEvent[]> {
  const events: StoreEvent[] = [];
  for (let pulls = 0; pulls < count && events.length < count; pulls++) {
    const next = await iterator.next();
    if (next.done === true) assert.fail(`the watch ended after ${events.length} of ${count} events`);
    assert.ok(next.value.length > 0, "the watch yielded an empty batch");
    events.push(...next.value);
  }
  return events;
}

export function summary(events: StoreEvent[]): string[] {
  return events.map((event) => `${event.revision} ${event.type} ${event.key}`);
}
