import { useEffect, useState } from "react";
import {
  PipelineRunEventType,
  PipelineRunState,
  type PipelineRunSummary,
  PipelineRunsService,
} from "../../gen/corral/v1/pipelines_pb.ts";
import { errorText } from "../api/errors.ts";
import { follow } from "../api/follow.ts";
import { useSession } from "../live/session.ts";

const runStateText: Record<PipelineRunState, string> = {
  [PipelineRunState.UNSPECIFIED]: "-",
  [PipelineRunState.STARTING]: "starting",
  [PipelineRunState.RUNNING]: "running",
  [PipelineRunState.RESTARTING]: "restarting",
  [PipelineRunState.SUCCEEDED]: "succeeded",
  [PipelineRunState.FAILED]: "failed",
  [PipelineRunState.STOPPED]: "stopped",
};

function stateOf(p: PipelineRunSummary): string {
  if (!p.compatible) return "incompatible";
  if (p.run !== undefined && (p.started || p.run.state === PipelineRunState.FAILED))
    return runStateText[p.run.state];
  return p.started ? "started" : "stopped";
}

/**
 * The node's pipelines and their runs, live (PipelineRunsService.WatchPipelines); operators start and
 * stop them (NodeOpsService.SetPipelineRunning); a run's log opens in the log panel.
 */
export function NodePipelines({
  nodeId,
  onShowLog,
}: {
  nodeId: string;
  onShowLog: (source: string) => void;
}) {
  const { clients, can } = useSession();
  const mayRun = can("/corral.v1.NodeOpsService/SetPipelineRunning");
  const [pipelines, setPipelines] = useState<Map<string, PipelineRunSummary>>(new Map());
  const [synced, setSynced] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    const stop = new AbortController();
    let pending = new Map<string, PipelineRunSummary>();
    let syncing = true;
    follow(
      (signal) => clients.client(PipelineRunsService).watchPipelines({ nodeId }, { signal }),
      {
        onConnect: () => {
          pending = new Map();
          syncing = true;
        },
        onItem: ({ type, pipeline }) => {
          if (type === PipelineRunEventType.SYNCED) {
            syncing = false;
            setPipelines(pending);
            setSynced(true);
            setError("");
            return;
          }
          if (pipeline === undefined) return;
          if (syncing) pending.set(pipeline.pipelineId, pipeline);
          else
            setPipelines((current) => {
              const next = new Map(current);
              if (type === PipelineRunEventType.DELETED) next.delete(pipeline.pipelineId);
              else next.set(pipeline.pipelineId, pipeline);
              return next;
            });
        },
        onState: (state, e) => {
          if (state === "failed" || state === "retrying") setError(e === undefined ? "" : errorText(e));
        },
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [clients, nodeId]);

  const setRunning = async (pipeline: PipelineRunSummary, running: boolean) => {
    setError("");
    try {
      await clients.nodeOps.setPipelineRunning({ node: nodeId, id: pipeline.pipelineId, running });
    } catch (e) {
      setError(errorText(e));
    }
  };

  const list = [...pipelines.values()].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <div>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {synced && list.length === 0 && (
        <p className="muted">No pipelines on this node (corral pipelines create … --node).</p>
      )}
      {list.length > 0 && (
        <table className="table" data-testid="pipelines">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Run</th>
              <th>Restarts</th>
              <th>Restart policy</th>
              <th>Startup</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.map((p) => {
              const state = stateOf(p);
              const run = p.run;
              return (
                <tr key={p.pipelineId} data-pipeline={p.name} data-state={state}>
                  <td className="strong">{p.name}</td>
                  <td>
                    <span
                      className={`badge ${state === "running" ? "status-ready" : state === "failed" ? "status-down" : ""}`}
                    >
                      {state}
                    </span>
                    {run?.exitReason ? <span className="muted small"> {run.exitReason}</span> : null}
                  </td>
                  <td className="mono small">{run?.runId || "-"}</td>
                  <td>{run?.restarts ?? 0}</td>
                  <td>{p.restartPolicy}</td>
                  <td>{p.startup}</td>
                  <td className="actions">
                    {run !== undefined && (
                      <button
                        type="button"
                        className="ghost small"
                        onClick={() => onShowLog(`pipeline:${run.runId}`)}
                      >
                        Logs
                      </button>
                    )}
                    {mayRun && p.compatible && (
                      <button
                        type="button"
                        className={`small ${p.started ? "danger" : ""}`}
                        onClick={() => void setRunning(p, !p.started)}
                      >
                        {p.started ? "Stop" : "Start"}
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
