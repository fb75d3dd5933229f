import type { Clock } from "../../base/clock.ts";
import { CorralError } from "../../base/errors.ts";
import type { Store } from "../../store/store.ts";
import type { StoreEvent } from "../../store/types.ts";

export const healthStatuses = ["OK", "DEGRADED", "UNHEALTHY"] as const;
export type HealthStatusName = (typeof healthStatuses)[number];

/** What a node (or a service on it) last said about its own health, component by component. */
export interface NodeHealthRecord {
  nodeId: string;
  status: HealthStatusName;
  checks: { name: string; status: HealthStatusName; message: string }[];
  /** When the reporter measured it (ms), and when the controller received it. */
  reportedAt: number;
  receivedAt: number;
  reportedBy: string;
}

export interface NodeHealthEvent {
  kind: "node-health";
  type: "node-health.put" | "node-health.deleted";
  revision: number;
  key: string;
  health?: NodeHealthRecord;
}

export const nodeHealthPrefix = "/node-health/";
const limits = { maxChecks: 64, maxText: 512 } as const;

export function decodeNodeHealthEvent(event: StoreEvent): NodeHealthEvent {
  const base = { kind: "node-health" as const, revision: event.revision, key: event.key };
  if (event.type === "delete" || event.value === undefined) return { ...base, type: "node-health.deleted" };
  return { ...base, type: "node-health.put", health: JSON.parse(event.value) as NodeHealthRecord };
}

/**
 * Health reports land in the store (one record per node, replaced by each report), so every
 * controller and tool sees the latest one and each change is an event.
 */
export class NodeHealthBook {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async report(input: Omit<NodeHealthRecord, "receivedAt">): Promise<NodeHealthRecord> {
    if (!(healthStatuses as readonly string[]).includes(input.status)) {
      throw CorralError.invalidArgument(
        "status",
        `"${input.status}" is not one of ${healthStatuses.join(", ")}`,
      );
    }
    if (input.checks.length > limits.maxChecks) {
      throw CorralError.invalidArgument("checks", `at most ${limits.maxChecks} checks per report`);
    }
    input.checks.forEach((check, i) => {
      if (check.name.trim() === "") throw CorralError.invalidArgument(`checks[${i}].name`, "is empty");
      if (!(healthStatuses as readonly string[]).includes(check.status)) {
        throw CorralError.invalidArgument(
          `checks[${i}].status`,
          `"${check.status}" is not one of ${healthStatuses.join(", ")}`,
        );
      }
      if (check.name.length > limits.maxText || check.message.length > limits.maxText) {
        throw CorralError.invalidArgument(
          `checks[${i}]`,
          `name and message are at most ${limits.maxText} characters`,
        );
      }
    });
    const record: NodeHealthRecord = { ...input, receivedAt: this.#clock.now() };
    await this.#store.commit({
      ops: [{ type: "put", key: nodeHealthPrefix + input.nodeId, value: JSON.stringify(record) }],
    });
    return record;
  }

  async get(nodeId: string): Promise<NodeHealthRecord | undefined> {
    const kv = await this.#store.get(nodeHealthPrefix + nodeId);
    return kv === undefined ? undefined : (JSON.parse(kv.value) as NodeHealthRecord);
  }
}
