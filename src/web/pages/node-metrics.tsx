import { useEffect, useState } from "react";
import type { MetricsSample } from "../../gen/corral/v1/metrics_pb.ts";
import { MetricsService } from "../../gen/corral/v1/metrics_pb.ts";
import { errorText } from "../api/errors.ts";
import { follow, type LinkState } from "../api/follow.ts";
import { LiveChart } from "../components/chart.tsx";
import { useSession } from "../live/session.ts";

const maxSamples = 900;

interface Series {
  readonly t: number[];
  readonly cpu: (number | null)[];
  readonly memUsed: (number | null)[];
  readonly memTotal: (number | null)[];
  readonly rx: (number | null)[];
  readonly tx: (number | null)[];
  readonly temp: (number | null)[];
}

const empty = (): Series => ({ t: [], cpu: [], memUsed: [], memTotal: [], rx: [], tx: [], temp: [] });

function append(series: Series, samples: readonly MetricsSample[]): Series {
  const next: Series = {
    t: [...series.t],
    cpu: [...series.cpu],
    memUsed: [...series.memUsed],
    memTotal: [...series.memTotal],
    rx: [...series.rx],
    tx: [...series.tx],
    temp: [...series.temp],
  };
  const last = next.t[next.t.length - 1] ?? 0;
  for (const s of samples) {
    const t = s.timeUnixMs / 1000;
    if (t <= last) continue;
    next.t.push(t);
    next.cpu.push(s.cpuPercent);
    next.memUsed.push(s.memoryUsedBytes / 2 ** 30);
    next.memTotal.push(s.memoryTotalBytes / 2 ** 30);
    next.rx.push(s.networkRxBytesPerSecond / 1024);
    next.tx.push(s.networkTxBytesPerSecond / 1024);
    next.temp.push(s.temperatureCelsius ?? null);
  }
  const drop = next.t.length - maxSamples;
  if (drop > 0) for (const a of Object.values(next) as unknown[][]) a.splice(0, drop);
  return next;
}

/** CPU, memory, network and temperature of one node, live from MetricsService.WatchNodeMetrics. */
export function NodeMetrics({ nodeId }: { nodeId: string }) {
  const { clients, can } = useSession();
  const allowed = can("/corral.v1.MetricsService/WatchNodeMetrics");
  const [series, setSeries] = useState<Series>(empty);
  const [state, setState] = useState<{ link: LinkState; error: string }>({ link: "connecting", error: "" });

  useEffect(() => {
    if (!allowed) return;
    const stop = new AbortController();
    const metrics = clients.client(MetricsService);
    let lastSeen = 0;
    follow(
      (signal) => metrics.watchNodeMetrics({ nodeId, sinceUnixMs: lastSeen }, { signal }),
      {
        onItem: (message) => {
          const newest = message.samples[message.samples.length - 1];
          if (newest !== undefined) lastSeen = newest.timeUnixMs;
          setSeries((s) => append(s, message.samples));
        },
        onState: (link, error) => setState({ link, error: error === undefined ? "" : errorText(error) }),
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [clients, nodeId, allowed]);

  if (!allowed) return <p className="muted">This controller does not offer metrics history to your role.</p>;
  const latest = series.t.length - 1;
  const hasTemp = series.temp.some((v) => v !== null);
  return (
    <div>
      {state.link === "failed" && <p className="error">{state.error}</p>}
      {state.link === "retrying" && <p className="muted small">reconnecting… {state.error}</p>}
      {latest < 0 && state.link !== "failed" && (
        <p className="muted">Waiting for the node's first samples…</p>
      )}
      <div className="charts" data-testid="charts" data-samples={series.t.length}>
        <LiveChart
          title="CPU"
          unit="%"
          min={0}
          max={100}
          series={[{ label: "cpu", color: "#4e79a7" }]}
          times={series.t}
          values={[series.cpu]}
        />
        <LiveChart
          title="Memory"
          unit="GiB"
          min={0}
          series={[
            { label: "used", color: "#f28e2b" },
            { label: "total", color: "#59a14f" },
          ]}
          times={series.t}
          values={[series.memUsed, series.memTotal]}
        />
        <LiveChart
          title="Network"
          unit="KiB/s"
          min={0}
          series={[
            { label: "rx", color: "#76b7b2" },
            { label: "tx", color: "#e15759" },
          ]}
          times={series.t}
          values={[series.rx, series.tx]}
        />
        <LiveChart
          title={hasTemp ? "Temperature" : "Temperature (no sensor)"}
          unit="°C"
          series={[{ label: "temp", color: "#edc948" }]}
          times={series.t}
          values={[series.temp]}
        />
      </div>
    </div>
  );
}
