import { NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { Link } from "../components/link.tsx";
import { allStatuses } from "../components/status-badge.tsx";
import { placementText, statusText } from "../live/cluster-store.ts";
import { bytesText, clockText, mbText } from "../live/format.ts";
import { useCluster } from "../live/session.ts";
import { OverviewCertificateWarnings } from "./certificates-page.tsx";

export function OverviewPage() {
  const cluster = useCluster();
  const nodes = [...cluster.nodes.values()];
  const counts = new Map<NodeStatus, number>();
  for (const node of nodes) counts.set(node.status, (counts.get(node.status) ?? 0) + 1);
  const live = nodes.filter((n) => n.status !== NodeStatus.LEFT && n.status !== NodeStatus.DOWN);
  let cores = 0;
  let memoryMb = 0;
  let gpus = 0;
  let gpuMemoryMb = 0;
  let maxLayers = 0;
  let usedLayers = 0;
  for (const node of live) {
    const r = node.resources;
    if (r === undefined) continue;
    cores += r.cpuCores;
    memoryMb += Number(r.memoryMb);
    gpus += r.gpus.length;
    for (const gpu of r.gpus) gpuMemoryMb += Number(gpu.memoryMb);
    maxLayers += r.maxLayers;
    usedLayers += r.usedLayers;
  }
  // Live figures from each node's newest metrics sample (pushed by its agent, streamed here).
  let busyCores = 0;
  let sampledCores = 0;
  let memUsed = 0;
  let memTotal = 0;
  let rx = 0;
  let tx = 0;
  let hottest: { name: string; celsius: number } | undefined;
  for (const node of live) {
    const sample = cluster.latest.get(node.id);
    if (sample === undefined) continue;
    const nodeCores = node.resources?.cpuCores || 1;
    busyCores += (sample.cpuPercent / 100) * nodeCores;
    sampledCores += nodeCores;
    memUsed += sample.memoryUsedBytes;
    memTotal += sample.memoryTotalBytes;
    rx += sample.networkRxBytesPerSecond;
    tx += sample.networkTxBytesPerSecond;
    const t = sample.temperatureCelsius;
    if (t !== undefined && (hottest === undefined || t > hottest.celsius))
      hottest = { name: node.name, celsius: t };
  }
  const cpuAvg = sampledCores === 0 ? undefined : (busyCores / sampledCores) * 100;
  const models = [...cluster.models.values()];
  return (
    <div className="page">
      <h1>Overview</h1>
      <OverviewCertificateWarnings />
      <section className="stat-row" data-testid="status-counts">
        <div className="stat">
          <div className="stat-value">{nodes.length}</div>
          <div className="stat-label">nodes</div>
        </div>
        {allStatuses.map((status) => (
          <Link
            key={status}
            to={`/nodes?status=${statusText[status]}`}
            className={`stat status-card status-${statusText[status]}`}
          >
            <div className="stat-value">{counts.get(status) ?? 0}</div>
            <div className="stat-label">{statusText[status]}</div>
          </Link>
        ))}
      </section>
      <section className="grid-2">
        <div className="card">
          <h2>Capacity (nodes not down)</h2>
          <dl className="facts">
            <dt>CPU</dt>
            <dd>
              {cores} cores
              {cpuAvg !== undefined && (
                <>
                  {" "}
                  <Meter used={cpuAvg} total={100} />{" "}
                  <span data-testid="cluster-cpu">{cpuAvg.toFixed(0)}%</span> busy
                </>
              )}
            </dd>
            <dt>Memory</dt>
            <dd>
              {mbText(memoryMb)}
              {memTotal > 0 && (
                <>
                  {" "}
                  <Meter used={memUsed} total={memTotal} /> {bytesText(memUsed)} in use
                </>
              )}
            </dd>
            <dt>Network</dt>
            <dd>
              ↓ {bytesText(rx)}/s · ↑ {bytesText(tx)}/s
            </dd>
            <dt>Temperature</dt>
            <dd>
              {hottest === undefined
                ? "no sensor"
                : `${hottest.celsius.toFixed(1)} °C hottest (${hottest.name})`}
            </dd>
            <dt>GPUs</dt>
            <dd>
              {gpus}
              {gpuMemoryMb > 0 && <span className="muted"> · {mbText(gpuMemoryMb)}</span>}
            </dd>
            <dt>Model layers</dt>
            <dd>
              <Meter used={usedLayers} total={maxLayers} /> {usedLayers} / {maxLayers} used
            </dd>
            <dt>Models</dt>
            <dd>
              {models.length === 0
                ? "none"
                : models.map((m) => `${m.name} (${placementText[m.state]})`).join(", ")}
            </dd>
          </dl>
        </div>
        <div className="card">
          <h2>Recent events</h2>
          {cluster.events.length === 0 ? (
            <p className="muted">
              Nothing has happened since this page opened. Changes appear here as they happen.
            </p>
          ) : (
            <ul className="events" data-testid="events">
              {cluster.events.slice(0, 14).map((event) => (
                <li key={event.id} className={`tone-${event.tone}`}>
                  <span className="muted mono">{clockText(event.at)}</span> {event.text}
                </li>
              ))}
            </ul>
          )}
        </div>
      </section>
    </div>
  );
}

export function Meter({ used, total }: { used: number; total: number }) {
  const pct = total <= 0 ? 0 : Math.min(100, (used / total) * 100);
  return (
    <span className="meter" title={`${pct.toFixed(0)}%`}>
      <span style={{ width: `${pct}%` }} />
    </span>
  );
}
