import { CorralError } from "../../base/errors.ts";
import { asArray, asObject, asOneOf, asString } from "../json-fields.ts";

/**
 * Clusters as the store keeps them (`/clusters/<name>`): named groups of nodes, each a k3s server or
 * agent, with where their rollout stands. No I/O; the controller's cluster manager writes them.
 */
export const clusterRoles = ["server", "agent"] as const;
export type ClusterRole = (typeof clusterRoles)[number];

export const clusterStates = [
  "new",
  "provisioning",
  "ready",
  "failed",
  "deprovisioning",
  "deprovisioned",
] as const;
export type ClusterState = (typeof clusterStates)[number];

export const memberStates = [
  "pending",
  "provisioning",
  "provisioned",
  "failed",
  "rolled-back",
  "deprovisioning",
  "deprovisioned",
] as const;
export type MemberState = (typeof memberStates)[number];

export interface ClusterPlans {
  server: string;
  agent: string;
  serverUninstall: string;
  agentUninstall: string;
}

export const defaultClusterPlans: Readonly<ClusterPlans> = {
  server: "k3s-server",
  agent: "k3s-agent",
  serverUninstall: "k3s-server-uninstall",
  agentUninstall: "k3s-agent-uninstall",
};

export interface ClusterMemberRecord {
  nodeId: string;
  nodeName: string;
  role: ClusterRole;
  state: MemberState;
  message: string;
  lastJobId: string;
  attempts: number;
}

export interface ClusterJobRef {
  phase: string;
  jobId: string;
}

export interface ClusterRecord {
  name: string;
  state: ClusterState;
  message: string;
  plans: ClusterPlans;
  parameters: Record<string, string>;
  /** "" until set: then https://<server address>:6443. */
  serverUrl: string;
  agentConcurrency: number;
  members: ClusterMemberRecord[];
  jobs: ClusterJobRef[];
  /** The secret the server is installed with (k3s `token`); never leaves the controller. */
  secret: string;
  /** What the server's plan printed as `corral-token: …`, handed to the agents; never leaves the controller. */
  joinToken: string;
  createdAt: number;
  updatedAt: number;
}

export const clusterPrefix = "/clusters/";
export const clusterNamePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Jobs remembered per cluster (the newest). */
export const maxClusterJobs = 32;

export function clusterKey(name: string): string {
  return `${clusterPrefix}${name}`;
}

export function checkClusterName(name: string): string {
  if (!clusterNamePattern.test(name))
    throw CorralError.invalidArgument(
      "name",
      `"${name}" is not a cluster name (lower case letters, digits and '-', at most 63)`,
    );
  return name;
}

/** Plan references: a plan name, optionally @version. */
const planRefPattern = /^[a-z0-9][a-z0-9._-]{0,62}(@[0-9A-Za-z][0-9A-Za-z.+_-]{0,31})?$/;

export function checkPlans(plans: Partial<ClusterPlans>): ClusterPlans {
  const out = { ...defaultClusterPlans };
  for (const key of Object.keys(defaultClusterPlans) as (keyof ClusterPlans)[]) {
    const value = plans[key];
    if (value === undefined || value === "") continue;
    if (!planRefPattern.test(value))
      throw CorralError.invalidArgument(
        `plans.${key}`,
        `"${value}" is not a plan name (name or name@version)`,
      );
    out[key] = value;
  }
  return out;
}

/** Parameters the cluster itself fills in: an operator cannot set them. */
export const reservedParameters = ["token", "server"] as const;

export function checkParameters(parameters: Readonly<Record<string, string>>): Record<string, string> {
  const entries = Object.entries(parameters);
  if (entries.length > 64) throw CorralError.invalidArgument("parameters", "more than 64 parameters");
  for (const [name, value] of entries) {
    if ((reservedParameters as readonly string[]).includes(name))
      throw CorralError.invalidArgument(
        `parameters.${name}`,
        "is filled in by the cluster (the server's secret, the server URL, the join token)",
      );
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name))
      throw CorralError.invalidArgument(`parameters.${name}`, "is not a parameter name");
    if (value.length > 4096)
      throw CorralError.invalidArgument(`parameters.${name}`, "is longer than 4096 bytes");
  }
  return Object.fromEntries(entries);
}

export function checkServerUrl(url: string): string {
  if (url === "") return url;
  if (!/^https:\/\/[A-Za-z0-9.-]+:[0-9]{1,5}$/.test(url))
    throw CorralError.invalidArgument("server_url", `"${url}" is not https://host:port`);
  return url;
}

/** A cluster has at most one server; a node is in it once. */
export function checkMembers(members: readonly ClusterMemberRecord[], maxNodes: number): void {
  if (members.length > maxNodes)
    throw CorralError.invalidArgument("nodes", `a cluster has at most ${maxNodes} nodes`);
  const servers = members.filter((m) => m.role === "server");
  if (servers.length > 1)
    throw CorralError.invalidArgument(
      "role",
      `a cluster has one server; ${servers.map((s) => s.nodeName).join(" and ")} are both servers`,
    );
  const seen = new Set<string>();
  for (const member of members) {
    if (seen.has(member.nodeId))
      throw new CorralError("ALREADY_EXISTS", `node ${member.nodeName} is in the cluster already`);
    seen.add(member.nodeId);
  }
}

export function newMember(nodeId: string, nodeName: string, role: ClusterRole): ClusterMemberRecord {
  return { nodeId, nodeName, role, state: "pending", message: "", lastJobId: "", attempts: 0 };
}

/** Whether a member holds anything a deprovision would have to remove. */
export function isInstalled(member: ClusterMemberRecord): boolean {
  return member.state !== "pending" && member.state !== "deprovisioned" && member.state !== "rolled-back";
}

export const isBusy = (state: ClusterState) => state === "provisioning" || state === "deprovisioning";

/** The newest jobs, the oldest dropped beyond `maxClusterJobs`. */
export function withJob(jobs: readonly ClusterJobRef[], job: ClusterJobRef): ClusterJobRef[] {
  return [...jobs, job].slice(-maxClusterJobs);
}

/** The value of the last `corral-token: <value>` line of some output, if any. */
export function tokenFromOutput(output: string): string | undefined {
  let token: string | undefined;
  for (const match of output.matchAll(/^corral-token:[ \t]*(\S+)[ \t]*$/gm)) token = match[1];
  return token;
}

/** The output with every `corral-token:` line's value replaced by `***`. */
export function maskTokenLines(output: string): string {
  return output.replace(/^(corral-token:[ \t]*)\S+/gm, "$1***");
}

export function encodeCluster(cluster: ClusterRecord): string {
  return JSON.stringify(cluster);
}

export function decodeCluster(text: string): ClusterRecord {
  const json = asObject(JSON.parse(text), "cluster");
  asString(json.name, "cluster.name");
  asOneOf(json.state, clusterStates, "cluster.state");
  asArray(json.members, "cluster.members");
  return json as unknown as ClusterRecord;
}
