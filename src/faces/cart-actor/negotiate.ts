import { parseHostPort } from "../../base/address.ts";
import type { Clock } from "../../base/clock.ts";
import { parseDuration } from "../../base/duration.ts";
import { emptyResources, type NodeRecord } from "../../core/nodes/node.ts";
import { defaults } from "../../defaults.ts";
import type { OwnershipFollower as Ownership } from "../../engines/ownership-follower.ts";
import { ControlPlane } from "../../gen/control_plane_pb.ts";
import type { AgentReach } from "../face-context.ts";

/** Hosts that failed a probe, with when they may be probed again (per controller: per directory). */
const failedProbes = new WeakMap<Ownership, Map<string, number>>();

/** What a negotiation needs besides the directory: the time, and a way to dial a host over mTLS. */
export interface NegotiateDeps {
  readonly clock: Clock;
  readonly agents: Pick<AgentReach, "client">;
}

export interface NegotiateOutcome {
  /** Eligible members' hosts, the callee's included, sorted. */
  readonly hosts: string[];
  /** Unknown hosts that answered a probe as a member, and those that did not. */
  readonly learned: string[];
  readonly unreachable: string[];
}

const maxKnownHosts = 1_024;

/**
 * go-cart-actor's Negotiate on the controller: the caller's hosts are merged into what the directory
 * knows. corral's membership is its registry (nodes join by token or request), so a host the directory
 * does not know counts only once it proves to be a member: the controller pings it over the cluster's
 * mTLS (its certificate must come from this cluster's CA), and if the answer names a member's host, the
 * host is remembered as another name of that member. A host that never answered as a healthy member is
 * not returned. The answer is the hosts of the members that are ready and not draining, plus the callee.
 */
export async function negotiate(
  deps: NegotiateDeps,
  ownership: Ownership,
  knownHosts: readonly string[],
  callee: string,
  signal: AbortSignal,
): Promise<NegotiateOutcome> {
  const limits = defaults.ownership;
  const now = deps.clock.now();
  let failed = failedProbes.get(ownership);
  if (failed === undefined) {
    failed = new Map();
    failedProbes.set(ownership, failed);
  }
  const unknown = [...new Set(knownHosts.slice(0, maxKnownHosts).map((h) => h.trim()))].filter(
    (host) => host !== "" && host !== callee && ownership.find(host) === undefined,
  );
  const toProbe = unknown
    .filter((host) => (failed.get(host) ?? 0) <= now)
    .slice(0, limits.maxProbesPerNegotiate);
  const timeoutMs = parseDuration(limits.probeTimeout);
  const learned: string[] = [];
  const unreachable: string[] = [];
  await Promise.all(
    toProbe.map(async (host) => {
      const member = await probe(deps, ownership, host, timeoutMs, signal);
      if (member !== undefined) {
        ownership.learnAlias(host, member);
        failed.delete(host);
        learned.push(host);
      } else {
        unreachable.push(host);
        failed.delete(host);
        failed.set(host, now + parseDuration(limits.probeRetryAfter));
        while (failed.size > limits.maxAliases) {
          const oldest = failed.keys().next().value;
          if (oldest === undefined) break;
          failed.delete(oldest);
        }
      }
    }),
  );
  const hosts = new Set(ownership.directory.eligibleMembers().map((m) => m.host));
  hosts.add(callee);
  return { hosts: [...hosts].sort(), learned: learned.sort(), unreachable: unreachable.sort() };
}

/** Pings `host` over mTLS; answers the node id of the member it turned out to be, if any. */
async function probe(
  deps: NegotiateDeps,
  ownership: Ownership,
  host: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<string | undefined> {
  let address: { host: string; port: number };
  try {
    address = parseHostPort(host, "known_hosts");
  } catch {
    return undefined;
  }
  try {
    const client = await deps.agents.client(ControlPlane, probeTarget(address.host, address.port));
    const reply = await client.ping({}, { signal, timeoutMs });
    const member = ownership.find(reply.host);
    return member?.status === "ready" ? member.id : undefined;
  } catch {
    return undefined;
  }
}

/** What the agent dialer needs of a node: where to dial. */
function probeTarget(host: string, port: number): NodeRecord {
  return {
    id: `probe:${host}:${port}`,
    name: `${host}:${port}`,
    role: "agent",
    address: host,
    port,
    metadata: {},
    services: [],
    resources: emptyResources(),
    labels: {},
    status: "ready",
    createdAt: 0,
    updatedAt: 0,
    lastSeenAt: 0,
    version: "",
  };
}
