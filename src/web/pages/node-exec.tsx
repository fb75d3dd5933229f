import { type FormEvent, useState } from "react";
import type { ExecResponse } from "../../gen/corral/v1/node_ops_pb.ts";
import { errorText } from "../api/errors.ts";
import { useSession } from "../live/session.ts";

const examples = ["uptime", "df -h", "free -m", "ip -br addr", "ss -tln"];

/** One allow-listed command on the node (argv, never a shell); the agent refuses anything else. */
export function NodeExec({ nodeId }: { nodeId: string }) {
  const { clients, can } = useSession();
  const [line, setLine] = useState("uptime");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<ExecResponse | undefined>();
  const [error, setError] = useState("");
  if (!can("/corral.v1.NodeOpsService/Exec"))
    return <p className="muted">Running commands needs the operator role.</p>;
  const run = async (event: FormEvent) => {
    event.preventDefault();
    const [command = "", ...args] = line.trim().split(/\s+/);
    if (command === "") return;
    setBusy(true);
    setError("");
    setResult(undefined);
    try {
      setResult(await clients.nodeOps.exec({ node: nodeId, command, args }));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div>
      <form className="filters" onSubmit={(e) => void run(e)}>
        <input
          className="mono grow"
          value={line}
          onChange={(e) => setLine(e.target.value)}
          aria-label="command"
          list="exec-examples"
        />
        <datalist id="exec-examples">
          {examples.map((e) => (
            <option key={e} value={e} />
          ))}
        </datalist>
        <button type="submit" disabled={busy}>
          {busy ? "Running…" : "Run"}
        </button>
      </form>
      <p className="muted small">
        Only the agent's allow-list runs (uptime, df, free, ip, ss, journalctl, vcgencmd, …); every run is
        audited.
      </p>
      {error !== "" && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {result !== undefined && (
        <div data-testid="exec-result">
          <p className="small">
            exit {result.exitCode} · {result.durationMs.toString()} ms{result.timedOut && " · timed out"}
            {result.truncated && " · output cut"}
          </p>
          <pre className="log">{result.stdout || "(no output)"}</pre>
          {result.stderr !== "" && <pre className="log stderr">{result.stderr}</pre>}
        </div>
      )}
    </div>
  );
}
