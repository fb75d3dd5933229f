import { useVirtualizer } from "@tanstack/react-virtual";
import { useMemo, useRef, useState } from "react";
import type { MetricsSample } from "../../gen/corral/v1/metrics_pb.ts";
import { type MetadataValue, type Node, NodeService, NodeStatus } from "../../gen/corral/v1/nodes_pb.ts";
import { allStatuses, StatusBadge } from "../components/status-badge.tsx";
import { statusText } from "../live/cluster-store.ts";
import { agoText, mbText, tsMs } from "../live/format.ts";
import { navigate } from "../live/router.ts";
import { useCluster } from "../live/session.ts";
import { Meter } from "./overview-page.tsx";

function CpuCell({ sample, status }: { sample: MetricsSample | undefined; status: NodeStatus }) {
  // A node that is down or gone has no current load; its last sample would mislead.
  if (sample === undefined || status === NodeStatus.DOWN || status === NodeStatus.LEFT)
    return <span className="muted">-</span>;
  return (
    <>
      <Meter used={sample.cpuPercent} total={100} /> {sample.cpuPercent.toFixed(0)}%
    </>
  );
}

export const serviceText: Record<NodeService, string> = {
  [NodeService.UNSPECIFIED]: "?",
  [NodeService.HUB_SERVER]: "hub-server",
  [NodeService.RESOURCES]: "resources",
  [NodeService.LOGGING]: "logging",
  [NodeService.PIPELINES]: "pipelines",
};

export function metadataText(value: MetadataValue | undefined): string {
  const v = value?.value;
  if (v === undefined || v.case === undefined) return "";
  if (v.case === "bytesValue") return `${v.value.length} bytes`;
  return String(v.value);
}

type SortKey = "name" | "status" | "address" | "cpu" | "load" | "memory" | "layers" | "seen";

const columns: { key: SortKey; label: string }[] = [
  { key: "name", label: "Name" },
  { key: "status", label: "Status" },
  { key: "address", label: "Address" },
  { key: "cpu", label: "CPU" },
  { key: "load", label: "CPU busy" },
  { key: "memory", label: "Memory" },
  { key: "layers", label: "Layers" },
  { key: "seen", label: "Last seen" },
];

const statusOrder: Record<NodeStatus, number> = {
  [NodeStatus.READY]: 0,
  [NodeStatus.SUSPECT]: 1,
  [NodeStatus.DOWN]: 2,
  [NodeStatus.PENDING]: 3,
  [NodeStatus.LEFT]: 4,
  [NodeStatus.UNSPECIFIED]: 5,
};

function sortValue(node: Node, key: SortKey, latest: ReadonlyMap<string, MetricsSample>): string | number {
  switch (key) {
    case "name":
      return node.name.toLowerCase();
    case "status":
      return statusOrder[node.status];
    case "address":
      return `${node.address}:${String(node.port).padStart(5, "0")}`;
    case "cpu":
      return node.resources?.cpuCores ?? 0;
    case "load":
      return latest.get(node.id)?.cpuPercent ?? -1;
    case "memory":
      return Number(node.resources?.memoryMb ?? 0);
    case "layers":
      return node.resources?.usedLayers ?? 0;
    case "seen":
      return -tsMs(node.lastSeenAt);
  }
}

/** "key=value" pairs, comma separated; a bare key matches any value. */
function parseMetadataFilter(text: string): [string, string | undefined][] {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const at = part.indexOf("=");
      return at < 0 ? [part, undefined] : [part.slice(0, at).trim(), part.slice(at + 1).trim()];
    });
}

const rowHeight = 38;

export function NodesPage() {
  const cluster = useCluster();
  const initialStatus = new URLSearchParams(window.location.search).get("status") ?? "";
  const [status, setStatus] = useState(initialStatus);
  const [text, setText] = useState("");
  const [metadata, setMetadata] = useState("");
  const [service, setService] = useState("");
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "name", desc: false });

  const rows = useMemo(() => {
    const needle = text.trim().toLowerCase();
    const wanted = parseMetadataFilter(metadata);
    const list = [...cluster.nodes.values()].filter((node) => {
      if (status !== "" && statusText[node.status] !== status) return false;
      if (
        needle !== "" &&
        !node.name.toLowerCase().includes(needle) &&
        !node.id.includes(needle) &&
        !node.address.includes(needle)
      )
        return false;
      if (service !== "" && !node.services.some((s) => serviceText[s] === service)) return false;
      for (const [key, value] of wanted) {
        const have = node.metadata[key] ?? undefined;
        const label = node.labels[key];
        if (have === undefined && label === undefined) return false;
        if (value !== undefined && metadataText(have) !== value && label !== value) return false;
      }
      return true;
    });
    list.sort((a, b) => {
      const x = sortValue(a, sort.key, cluster.latest);
      const y = sortValue(b, sort.key, cluster.latest);
      const order = x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name);
      return sort.desc ? -order : order;
    });
    return list;
  }, [cluster.nodes, cluster.latest, status, text, metadata, service, sort]);

  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => rowHeight,
    overscan: 12,
  });
  const now = Date.now();

  const header = (key: SortKey, label: string) => (
    <button
      type="button"
      key={key}
      className={`th ${sort.key === key ? "sorted" : ""}`}
      onClick={() => setSort((s) => ({ key, desc: s.key === key ? !s.desc : false }))}
    >
      {label}
      {sort.key === key ? (sort.desc ? " ▾" : " ▴") : ""}
    </button>
  );

  return (
    <div className="page page-fill">
      <h1>
        Nodes{" "}
        <span className="muted">
          {rows.length === cluster.nodes.size ? rows.length : `${rows.length} of ${cluster.nodes.size}`}
        </span>
      </h1>
      <div className="filters">
        <select aria-label="status" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">every status</option>
          {allStatuses.map((s) => (
            <option key={s} value={statusText[s]}>
              {statusText[s]}
            </option>
          ))}
        </select>
        <input
          aria-label="name"
          placeholder="name, id or address"
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <input
          aria-label="metadata"
          placeholder="metadata: key=value, key"
          value={metadata}
          onChange={(e) => setMetadata(e.target.value)}
        />
        <select aria-label="service" value={service} onChange={(e) => setService(e.target.value)}>
          <option value="">every service</option>
          {Object.values(serviceText)
            .filter((s) => s !== "?")
            .map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
        </select>
      </div>
      <section className="vtable" aria-label="nodes">
        <div className="vrow vhead">{columns.map((c) => header(c.key, c.label))}</div>
        <div className="vbody" ref={scroller} data-testid="nodes-scroller">
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {virtualizer.getVirtualItems().map((item) => {
              const node = rows[item.index];
              if (node === undefined) return null;
              const r = node.resources;
              return (
                <a
                  key={node.id}
                  href={`/nodes/${encodeURIComponent(node.id)}`}
                  className="vrow"
                  data-node={node.name}
                  style={{
                    position: "absolute",
                    top: 0,
                    left: 0,
                    right: 0,
                    height: rowHeight,
                    transform: `translateY(${item.start}px)`,
                  }}
                  onClick={(e) => {
                    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
                    e.preventDefault();
                    navigate(`/nodes/${encodeURIComponent(node.id)}`);
                  }}
                >
                  <span className="cell strong">{node.name}</span>
                  <span className="cell">
                    <StatusBadge status={node.status} />
                  </span>
                  <span className="cell mono">
                    {node.address === "" ? "-" : `${node.address}:${node.port}`}
                  </span>
                  <span className="cell">{r?.cpuCores ?? 0} cores</span>
                  <span className="cell">
                    <CpuCell sample={cluster.latest.get(node.id)} status={node.status} />
                  </span>
                  <span className="cell">{mbText(r?.memoryMb ?? 0n)}</span>
                  <span className="cell">
                    {r?.usedLayers ?? 0}/{r?.maxLayers ?? 0}
                  </span>
                  <span className="cell muted">
                    {node.lastSeenAt === undefined ? "-" : agoText(tsMs(node.lastSeenAt), now)}
                  </span>
                </a>
              );
            })}
          </div>
          {rows.length === 0 && <p className="muted empty">No node matches.</p>}
        </div>
      </section>
    </div>
  );
}
