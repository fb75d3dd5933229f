import { useEffect, useRef, useState } from "react";
import type { LogLine } from "../../gen/corral/v1/node_ops_pb.ts";
import { errorText } from "../api/errors.ts";
import { follow, type LinkState } from "../api/follow.ts";
import { tsMs } from "../live/format.ts";
import { useSession } from "../live/session.ts";

const keep = 500;

/** The node's log, live (NodeOpsService.TailLogs); resumes after a reconnect without repeating lines. */
export function NodeLogs({ nodeId, source = "" }: { nodeId: string; source?: string }) {
  const { clients, can } = useSession();
  const allowed = can("/corral.v1.NodeOpsService/TailLogs");
  const [lines, setLines] = useState<(LogLine & { key: number })[]>([]);
  const [state, setState] = useState<{ link: LinkState; error: string }>({ link: "connecting", error: "" });
  const [paused, setPaused] = useState(false);
  const [filter, setFilter] = useState("");
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!allowed) return;
    const stop = new AbortController();
    let counter = 0;
    let lastTime = 0;
    follow(
      (signal) => clients.nodeOps.tailLogs({ node: nodeId, source, tail: 100 }, { signal }),
      {
        onItem: (line) => {
          const time = tsMs(line.time);
          // After a reconnect the tail repeats lines already shown.
          if (time < lastTime) return;
          lastTime = time;
          counter += 1;
          const key = counter;
          setLines((current) => [...current.slice(-(keep - 1)), { ...line, key }]);
        },
        onState: (link, error) => setState({ link, error: error === undefined ? "" : errorText(error) }),
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [clients, nodeId, source, allowed]);

  useEffect(() => {
    if (!paused && box.current !== null) box.current.scrollTop = box.current.scrollHeight;
  });

  if (!allowed) return <p className="muted">Your role cannot read node logs.</p>;
  const needle = filter.toLowerCase();
  const shown = needle === "" ? lines : lines.filter((l) => l.message.toLowerCase().includes(needle));
  return (
    <div>
      <div className="filters">
        <input
          placeholder="filter lines"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
          aria-label="log filter"
        />
        <button type="button" className="ghost small" onClick={() => setPaused((p) => !p)}>
          {paused ? "Follow" : "Pause scrolling"}
        </button>
        <span className={`muted small link-${state.link}`}>
          {state.link === "live" ? "● live" : state.link}
          {state.error !== "" && ` · ${state.error}`}
        </span>
      </div>
      <div className="log" ref={box} data-testid="log">
        {shown.length === 0 && <div className="muted">No lines yet.</div>}
        {shown.map((l) => (
          <div key={l.key} className={`log-line lvl-${l.level}`}>
            <span className="log-time">{new Date(tsMs(l.time)).toLocaleTimeString()}</span>
            <span className="log-level">{l.level}</span>
            <span className="log-msg">{l.message}</span>
          </div>
        ))}
      </div>
    </div>
  );
}
