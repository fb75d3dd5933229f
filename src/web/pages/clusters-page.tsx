import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";
import {
  type Cluster,
  ClusterRole,
  ClusterState,
  ClustersService,
  MemberState,
} from "../../gen/corral/v1/clusters_pb.ts";
import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { ProvisioningService } from "../../gen/corral/v1/provisioning_pb.ts";
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

/**
 * k3s clusters (ClustersService). It has no watch of its own, so the page reads the clusters when it
 * opens, after each action, whenever a node's status changes (followed live already), and on every
 * event of the provisioning jobs under way (ProvisioningService.WatchJob streams those).
 */
export function ClustersPage() {
  const { clients, can } = useSession();
  const cluster = useCluster();
  const mayCreate = can("/corral.v1.ClustersService/CreateCluster");
  const mayProvision = can("/corral.v1.ClustersService/ProvisionCluster");
  const mayDeprovision = can("/corral.v1.ClustersService/DeprovisionCluster");
  const mayDelete = can("/corral.v1.ClustersService/DeleteCluster");
  const mayWatchJobs = can("/corral.v1.ProvisioningService/WatchJob");
  const [clusters, setClusters] = useState<Cluster[]>([]);
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);
  const nodeKey = [...cluster.nodes.values()].map((n) => `${n.id}:${n.status}`).join(",");

  const load = useCallback(async () => {
    try {
      const list = await clients.client(ClustersService).listClusters({});
      setClusters(list.clusters);
      setError("");
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoaded(true);
    }
  }, [clients]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: a node's status change is the trigger to read again.
  useEffect(() => {
    void load();
  }, [load, nodeKey]);

  // Each job under way: its events move the cluster on, so each one reads the clusters again.
  const finished = useRef(new Set<string>());
  const activeJobs = clusters
    .filter(busy)
    .flatMap((c) => c.jobs.map((j) => j.jobId))
    .filter((id) => id !== "" && !finished.current.has(id))
    .sort()
    .join(",");
  useEffect(() => {
    if (!mayWatchJobs || activeJobs === "") return;
    const stop = new AbortController();
    const provisioning = clients.client(ProvisioningService);
    for (const jobId of activeJobs.split(",")) {
      void (async () => {
        try {
          for await (const _event of provisioning.watchJob({ jobId }, { signal: stop.signal })) void load();
        } catch {
          // Gone or refused: the clusters read below still shows where things stand.
        }
        if (stop.signal.aborted) return;
        finished.current.add(jobId);
        await load();
        // The cluster record follows its job's end a moment later; one more read picks that up.
        setTimeout(() => {
          if (!stop.signal.aborted) void load();
        }, 1_000);
      })();
    }
    return () => stop.abort();
  }, [clients, activeJobs, mayWatchJobs, load]);

  const act = async (what: () => Promise<unknown>) => {
    setError("");
    try {
      await what();
      await load();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const service = () => clients.client(ClustersService);
  return (
    <div className="page">
      <div className="node-head">
        <h1>Clusters</h1>
        <button type="button" className="ghost" onClick={() => void load()}>
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
                  {c.healthyMembers}/{c.members.length} healthy
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
                    disabled={busy(c) || c.state === ClusterState.NEW}
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
