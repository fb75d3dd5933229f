import { useState } from "react";
import { NodeRole } from "../../gen/corral/v1/nodes_pb.ts";
import { errorText } from "../api/errors.ts";
import { Link } from "../components/link.tsx";
import { StatusBadge } from "../components/status-badge.tsx";
import { mbText, timeText } from "../live/format.ts";
import { navigate } from "../live/router.ts";
import { useCluster, useSession } from "../live/session.ts";
import { NodeExec } from "./node-exec.tsx";
import { NodeGpio } from "./node-gpio.tsx";
import { NodeLogs } from "./node-logs.tsx";
import { NodeMetrics } from "./node-metrics.tsx";
import { NodePipelines } from "./node-pipelines.tsx";
import { metadataText, serviceText } from "./nodes-page.tsx";

export function NodeDetailPage({ nodeId }: { nodeId: string }) {
  const cluster = useCluster();
  const { clients, can } = useSession();
  const [error, setError] = useState("");
  const [logSource, setLogSource] = useState("");
  const node = cluster.nodes.get(nodeId) ?? [...cluster.nodes.values()].find((n) => n.name === nodeId);
  if (node === undefined) {
    return (
      <div className="page">
        <p>
          <Link to="/nodes">← Nodes</Link>
        </p>
        <div className="card">{cluster.link === "live" ? `No node ${nodeId}.` : "Loading…"}</div>
      </div>
    );
  }
  const r = node.resources;
  const remove = async () => {
    if (!window.confirm(`Remove ${node.name} from the cluster? Its certificate stops working at once.`))
      return;
    try {
      await clients.nodes.removeNode({ node: node.id });
      navigate("/nodes");
    } catch (e) {
      setError(errorText(e));
    }
  };
  return (
    <div className="page">
      <p>
        <Link to="/nodes">← Nodes</Link>
      </p>
      <div className="node-head">
        <h1>
          {node.name} <StatusBadge status={node.status} />
        </h1>
        {can("/corral.v1.NodesService/RemoveNode") && node.role !== NodeRole.CONTROLLER && (
          <button type="button" className="danger" onClick={() => void remove()}>
            Remove node
          </button>
        )}
      </div>
      {error !== "" && <p className="error">{error}</p>}
      <div className="card">
        <dl className="facts cols">
          <dt>Id</dt>
          <dd className="mono">{node.id}</dd>
          <dt>Role</dt>
          <dd>{node.role === NodeRole.CONTROLLER ? "controller" : "agent"}</dd>
          <dt>Address</dt>
          <dd className="mono">{node.address === "" ? "-" : `${node.address}:${node.port}`}</dd>
          <dt>Version</dt>
          <dd>{node.version || "-"}</dd>
          <dt>CPU</dt>
          <dd>{r?.cpuCores ?? 0} cores</dd>
          <dt>Memory</dt>
          <dd>{mbText(r?.memoryMb ?? 0n)}</dd>
          <dt>GPUs</dt>
          <dd>
            {r === undefined || r.gpus.length === 0
              ? "none"
              : r.gpus.map((g) => `${g.name} (${mbText(g.memoryMb)})`).join(", ")}
          </dd>
          <dt>Layers</dt>
          <dd>
            {r?.usedLayers ?? 0} / {r?.maxLayers ?? 0}
          </dd>
          <dt>Services</dt>
          <dd>{node.services.map((s) => serviceText[s]).join(", ") || "-"}</dd>
          <dt>Metadata</dt>
          <dd>
            {Object.entries(node.metadata)
              .map(([k, v]) => `${k}=${metadataText(v)}`)
              .join(", ") || "-"}
          </dd>
          <dt>Labels</dt>
          <dd>
            {Object.entries(node.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(", ") || "-"}
          </dd>
          <dt>Joined</dt>
          <dd>{timeText(node.createdAt)}</dd>
        </dl>
      </div>
      <section className="card">
        <h2>Live metrics</h2>
        <NodeMetrics nodeId={node.id} />
      </section>
      <section className="card">
        <h2>GPIO</h2>
        <NodeGpio nodeId={node.id} />
      </section>
      <section className="card">
        <h2>Pipelines</h2>
        <NodePipelines nodeId={node.id} onShowLog={setLogSource} />
      </section>
      <section className="grid-2">
        <div className="card">
          <div className="node-head">
            <h2>Log</h2>
            <select aria-label="log source" value={logSource} onChange={(e) => setLogSource(e.target.value)}>
              <option value="">agent</option>
              <option value="journal">journal</option>
              {logSource.startsWith("pipeline:") && <option value={logSource}>{logSource}</option>}
            </select>
          </div>
          <NodeLogs key={logSource} nodeId={node.id} source={logSource} />
        </div>
        <div className="card">
          <h2>Run a command</h2>
          <NodeExec nodeId={node.id} />
        </div>
      </section>
    </div>
  );
}
