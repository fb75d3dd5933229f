import type { ClusterMemberRecord, ClusterPlans, ClusterRecord, ClusterRole } from "./cluster-record.ts";

/** A member as status shows it: its record, and the node's health as the controller sees it now. */
export interface ClusterMemberView extends ClusterMemberRecord {
  readonly nodeStatus: string;
  readonly health: string;
}

/** A cluster without its secrets, with its members' node health. */
export interface ClusterView {
  readonly record: Omit<ClusterRecord, "secret" | "joinToken" | "members">;
  readonly members: readonly ClusterMemberView[];
  readonly hasJoinToken: boolean;
  readonly healthyMembers: number;
  /** An operation (provision, deprovision, removal) is running on it now, on this controller. */
  readonly busy: boolean;
}

export interface CreateClusterInput {
  readonly name: string;
  readonly server: string;
  readonly agents: readonly string[];
  readonly plans: Partial<ClusterPlans>;
  readonly parameters: Readonly<Record<string, string>>;
  readonly serverUrl: string;
  readonly agentConcurrency: number;
}

/** One item of a clusters watch: a snapshot (then one "synced"), then each write as it lands. */
export interface ClusterChange {
  readonly kind: "snapshot" | "synced" | "put" | "deleted";
  readonly revision: number;
  /** Empty for synced. */
  readonly name: string;
  /** Absent for synced and deleted. */
  readonly view?: ClusterView;
}

/** What faces see of clusters; the controller's cluster manager implements it. */
export interface ClusterEngine {
  create(input: CreateClusterInput): Promise<ClusterView>;
  list(): Promise<ClusterView[]>;
  get(name: string): Promise<ClusterView>;
  addNodes(name: string, nodes: readonly string[], role: ClusterRole): Promise<ClusterView>;
  /** `by`: who asked (describePrincipal), for the jobs it starts. */
  removeNodes(name: string, nodes: readonly string[], by: string): Promise<ClusterView>;
  provision(name: string, by: string): Promise<ClusterView>;
  deprovision(name: string, by: string): Promise<ClusterView>;
  delete(name: string, force: boolean): Promise<void>;
  /** Ends when `signal` aborts; RESOURCE_EXHAUSTED for a reader more than `maxLag` store events behind. */
  /** `name` empty or absent: every cluster. */
  watch(options: { name?: string; signal: AbortSignal; maxLag?: number }): AsyncIterable<ClusterChange>;
}
