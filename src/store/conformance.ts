import { describe } from "node:test";
import { describeDurability } from "./conformance/durability-cases.ts";
import type { MakeStore } from "./conformance/fixture.ts";
import { describeHistory } from "./conformance/history-cases.ts";
import { describeKeyValues } from "./conformance/kv-cases.ts";
import { describeTransactions } from "./conformance/txn-cases.ts";
import { describeWatch } from "./conformance/watch-cases.ts";

export type { MakeStore, StoreFixture } from "./conformance/fixture.ts";

/**
 * Registers the behaviour every Store must have as node:test cases. `makeStore` gives each case a store
 * of its own, holding nothing; revisions are checked relative to where it starts.
 */
export function runStoreConformance(name: string, makeStore: MakeStore): void {
  describe(`Store conformance: ${name}`, () => {
    describeKeyValues(makeStore);
    describeTransactions(makeStore);
    describeHistory(makeStore);
    describeWatch(makeStore);
    describeDurability(makeStore);
  });
}
