import { type FormEvent, useEffect, useState } from "react";
import {
  type Cluster,
  ClusterEventKind,
  ClusterRole,
  ClusterState,
  ClustersService,
  MemberState,
} from "../../gen/corral/v1/clusters_pb.ts";
import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { errorText } from "../api/errors.ts";
import { Link } from "../components/link.tsx";
import { statusText } from "../live/cluster-store.ts";
import { timeText } from "../live/format.ts";
import { useCluster, useSession } from "../live/session.ts";

const clusterStateText: Record<ClusterState, string> = {
  [ClusterState.UNSPECIFIED]: "unknown",
  [ClusterState.NEW]: "new",
  [ClusterState.PROVISIONING]: "provisioning",
  [ClusterState.READY]: "ready",
  [ClusterState.FAILED]: "failed",
  [ClusterState.DEPROVISIONING]: "deprovisioning",
  [ClusterState.DEPROVISIONED]: "deprovisioned",
};

const memberStateText: Record<MemberState, string> = {
  [MemberState.UNSPECIFIED]: "unknown",
  [MemberState.PENDING]: "pending",
  [MemberState.PROVISIONING]: "provisioning",
  [MemberState.PROVISIONED]: "provisioned",
  [MemberState.FAILED]: "failed",
  [MemberState.ROLLED_BACK]: "rolled back",
  [MemberState.DEPROVISIONING]: "deprovisioning",
  [MemberState.DEPROVISIONED]: "deprovisioned",
};

const stateTone = (text: string): string =>
  text === "ready" || text === "provisioned" || text === "OK"
    ? "status-ready"
    : text === "failed" || text === "rolled back" || text === "UNHEALTHY" || text === "down"
      ? "status-down"
      : text === "new" || text === "pending" || text.endsWith("provisioned") || text === "left"
        ? "status-left"
        : "status-suspect";

const busy = (c: Cluster) => c.state === ClusterState.PROVISIONING || c.state === ClusterState.DEPROVISIONING;

/** Applies one WatchClusters event to the list, kept sorted by name. */
function applyEvent(list: readonly Cluster[], kind: ClusterEventKind, c: Cluster | undefined): Cluster[] {
  if (c === undefined) return [...list];
  const rest = list.filter((x) => x.name !== c.name);
  if (kind === ClusterEventKind.DELETED) return rest;
  return [...rest, c].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * k3s clusters (ClustersService), live from WatchClusters: the listing, then each write to a cluster
 * record, members' provisioning progress included. Node status comes from the session's live nodes.
 */
export function ClustersPage() {
  const { clients, can } = useSession();
  const cluster = useCluster();
  const mayCreate = can("/corral.v1.ClustersService/CreateCluster");
  const mayProvision = can("/corral.v1.ClustersService/ProvisionCluster");
  const mayDeprovision = can("/corral.v1.ClustersService/DeprovisionCluster");
  const mayDelete = can("/corral.v1.ClustersService/DeleteCluster");
  const [clusters, setClusters] = useState<Cluster[]>([]);
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);
  // Bumped to open the watch again after it failed (Refresh).
  const [generation, setGeneration] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: generation is the trigger to watch again.
  useEffect(() => {
    const stop = new AbortController();
    void (async () => {
      let pending: Cluster[] = [];
      try {
        for await (const event of clients
          .client(ClustersService)
          .watchClusters({}, { signal: stop.signal })) {
          if (event.kind === ClusterEventKind.SNAPSHOT) {
            pending = applyEvent(pending, event.kind, event.cluster);
            continue;
          }
          if (event.kind === ClusterEventKind.SYNCED) {
            setClusters(pending);
            setLoaded(true);
            setError("");
            continue;
          }
          setClusters((list) => applyEvent(list, event.kind, event.cluster));
        }
      } catch (e) {
        if (!stop.signal.aborted) setError(errorText(e));
      } finally {
        if (!stop.signal.aborted) setLoaded(true);
      }
    })();
    return () => stop.abort();
  }, [clients, generation]);
  const load = () => setGeneration((g) => g + 1);
  // The record's count is as of its last write; a node's status since then comes from the live nodes.
  const healthy = (c: Cluster) =>
    c.members.filter((m) => {
      const live = cluster.nodes.get(m.nodeId);
      const status = live === undefined ? m.nodeStatus : statusText[live.status];
      return status === "ready" && m.state === MemberState.PROVISIONED;
    }).length;

  const act = async (what: () => Promise<unknown>) => {
    setError("");
    try {
      await what();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const service = () => clients.client(ClustersService);
  return (
    <div className="page">
      <div className="node-head">
        <h1>Clusters</h1>
        <button type="button" className="ghost" onClick={load}>
          Refresh
        </button>
      </div>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {mayCreate && <CreateClusterForm onDone={(f) => act(f)} />}
      {clusters.length === 0 && (
        <div className="card muted">
          {loaded ? "No clusters yet." : "Loading…"}
          {loaded && mayCreate && " Create one above, or with `corral cluster create`."}
        </div>
      )}
      {clusters.map((c) => {
        const state = clusterStateText[c.state];
        return (
          <section key={c.name} className="card" data-cluster={c.name} data-state={state}>
            <div className="node-head">
              <h2>
                {c.name} <span className={`badge ${stateTone(state)}`}>{state}</span>{" "}
                <span className="muted small">
                  {healthy(c)}/{c.members.length} healthy
                </span>
              </h2>
              <div className="actions">
                {mayProvision && (
                  <button
                    type="button"
                    disabled={busy(c)}
                    onClick={() => void act(() => service().provisionCluster({ name: c.name }))}
                  >
                    Provision
                  </button>
                )}
                {mayDeprovision && (
                  <button
                    type="button"
                    className="ghost"
                    disabled={
                      busy(c) || c.state === ClusterState.NEW || c.state === ClusterState.DEPROVISIONED
                    }
                    onClick={() => {
                      if (window.confirm(`Deprovision ${c.name}? k3s is uninstalled from every member.`))
                        void act(() => service().deprovisionCluster({ name: c.name }));
                    }}
                  >
                    Deprovision
                  </button>
                )}
                {mayDelete && (
                  <button
                    type="button"
                    className="danger"
                    disabled={busy(c)}
                    onClick={() => {
                      if (window.confirm(`Delete the record of ${c.name}? Its nodes are left as they are.`))
                        void act(() => service().deleteCluster({ name: c.name }));
                    }}
                  >
                    Delete
                  </button>
                )}
              </div>
            </div>
            {c.message !== "" && (
              <p className={c.state === ClusterState.FAILED ? "error" : "muted"}>{c.message}</p>
            )}
            <table className="table">
              <thead>
                <tr>
                  <th>Node</th>
                  <th>Role</th>
                  <th>Provisioning</th>
                  <th>Node status</th>
                  <th>Health</th>
                  <th>Attempts</th>
                  <th>Note</th>
                </tr>
              </thead>
              <tbody>
                {c.members.map((m) => {
                  const memberState = memberStateText[m.state];
                  const live = cluster.nodes.get(m.nodeId);
                  const nodeStatus = live === undefined ? m.nodeStatus || "-" : statusText[live.status];
                  return (
                    <tr key={m.nodeId} data-member={m.nodeName} data-state={memberState}>
                      <td>
                        <Link to={`/nodes/${encodeURIComponent(m.nodeId)}`}>{m.nodeName || m.nodeId}</Link>
                      </td>
                      <td>{m.role === ClusterRole.SERVER ? "server" : "agent"}</td>
                      <td>
                        <span className={`badge ${stateTone(memberState)}`}>{memberState}</span>
                      </td>
                      <td>
                        <span className={`badge status-${nodeStatus}`}>{nodeStatus}</span>
                      </td>
                      <td>
                        {m.health === "" ? (
                          "-"
                        ) : (
                          <span className={`badge ${stateTone(m.health)}`}>{m.health}</span>
                        )}
                      </td>
                      <td>{m.attempts}</td>
                      <td className="small muted">{m.message || "-"}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <p className="muted small">
              Plans: {c.plans?.server || "k3s-server"} / {c.plans?.agent || "k3s-agent"}
              {c.serverUrl !== "" && ` · server ${c.serverUrl}`}
              {` · join token ${c.hasJoinToken ? "held" : "none yet"}`}
              {c.jobs.length > 0 && ` · jobs ${c.jobs.map((j) => `${j.phase} ${j.jobId}`).join(", ")}`}
              {` · updated ${timeText(c.updatedAt)}`}
            </p>
          </section>
        );
      })}
    </div>
  );
}

function CreateClusterForm({ onDone }: { onDone: (f: () => Promise<unknown>) => Promise<void> }) {
  const { clients } = useSession();
  const cluster = useCluster();
  const nodes = [...cluster.nodes.values()]
    .filter((n) => n.status !== NodeStatus.LEFT)
    .sort((a, b) => a.name.localeCompare(b.name));
  const [name, setName] = useState("");
  const [server, setServer] = useState("");
  const [agents, setAgents] = useState<Set<string>>(new Set());
  const serverId = server === "" ? (nodes[0]?.id ?? "") : server;
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    await onDone(async () => {
      await clients.client(ClustersService).createCluster({
        name: name.trim(),
        server: serverId,
        agents: [...agents].filter((a) => a !== serverId),
      });
      setName("");
      setAgents(new Set());
    });
  };
  return (
    <form className="card form-row" onSubmit={(e) => void submit(e)}>
      <h2>New cluster</h2>
      <label>
        Name
        <input aria-label="cluster name" value={name} onChange={(e) => setName(e.target.value)} required />
      </label>
      <label>
        Server
        <select aria-label="cluster server" value={serverId} onChange={(e) => setServer(e.target.value)}>
          {nodes.map((n) => (
            <option key={n.id} value={n.id}>
              {n.name}
            </option>
          ))}
        </select>
      </label>
      <fieldset className="grow checks">
        <legend>Agents</legend>
        {nodes
          .filter((n) => n.id !== serverId)
          .map((n) => (
            <label key={n.id} className="check">
              <input
                type="checkbox"
                checked={agents.has(n.id)}
                onChange={(e) =>
                  setAgents((s) => {
                    const next = new Set(s);
                    if (e.target.checked) next.add(n.id);
                    else next.delete(n.id);
                    return next;
                  })
                }
              />{" "}
              {n.name}
            </label>
          ))}
      </fieldset>
      <button type="submit" disabled={serverId === ""}>
        Create
      </button>
    </form>
  );
}
