import { type Model, PlacementState } from "../../gen/corral/v1/models_pb.ts";
import { Link } from "../components/link.tsx";
import { placementText } from "../live/cluster-store.ts";
import { colorOf } from "../live/colors.ts";
import { bytesText } from "../live/format.ts";
import { useCluster } from "../live/session.ts";
import { Meter } from "./overview-page.tsx";

export function ModelsPage() {
  const cluster = useCluster();
  const models = [...cluster.models.values()].sort((a, b) => a.name.localeCompare(b.name));
  const holders = [...cluster.nodes.values()]
    .filter((n) => (n.resources?.maxLayers ?? 0) > 0)
    .sort((a, b) => a.name.localeCompare(b.name));
  return (
    <div className="page">
      <h1>Models</h1>
      {models.length === 0 && (
        <div className="card">
          <p className="muted">
            No model yet. Add one with <code>corral models add NAME --layers 32 --size 13GB</code>, then{" "}
            <code>corral models assign NAME</code>.
          </p>
        </div>
      )}
      {models.map((model) => (
        <ModelCard key={model.id} model={model} />
      ))}
      {holders.length > 0 && (
        <div className="card">
          <h2>Layers per node</h2>
          <table className="table">
            <tbody>
              {holders.map((n) => (
                <tr key={n.id}>
                  <td className="strong">
                    <span className="swatch" style={{ background: colorOf(n.id) }} />
                    <Link to={`/nodes/${encodeURIComponent(n.id)}`}>{n.name}</Link>
                  </td>
                  <td style={{ width: "50%" }}>
                    <Meter used={n.resources?.usedLayers ?? 0} total={n.resources?.maxLayers ?? 0} />
                  </td>
                  <td>
                    {n.resources?.usedLayers ?? 0} / {n.resources?.maxLayers ?? 0} layers
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function ModelCard({ model }: { model: Model }) {
  const total = Math.max(1, model.layerCount);
  const state = placementText[model.state];
  return (
    <div className="card model" data-model={model.name}>
      <div className="model-head">
        <h2>
          {model.name} <span className="muted">v{model.version}</span>
        </h2>
        <span className={`badge placement-${state}`}>{state}</span>
      </div>
      <p className="muted small">
        {model.placedLayers}/{model.layerCount} layers placed · {bytesText(Number(model.sizeBytes))}
        {model.filePath && <> · {model.filePath}</>}
        {model.message && <> · {model.message}</>}
      </p>
      <div className="layer-bar" role="img" aria-label={`layer placement of ${model.name}`}>
        {model.assignments.map((range) => (
          <div
            key={`${range.nodeId}-${range.start}`}
            className="layer-seg"
            title={`${range.nodeName}: layers ${range.start}–${range.start + range.count - 1}`}
            style={{
              left: `${(range.start / total) * 100}%`,
              width: `${(range.count / total) * 100}%`,
              background: colorOf(range.nodeId),
            }}
          >
            <span>
              {range.nodeName} [{range.start}–{range.start + range.count - 1}]
            </span>
          </div>
        ))}
      </div>
      <div className="layer-scale">
        <span>0</span>
        <span>{model.layerCount - 1}</span>
      </div>
      {model.state === PlacementState.UNASSIGNED && (
        <p className="muted small">Not assigned: run corral models assign {model.name}.</p>
      )}
    </div>
  );
}
