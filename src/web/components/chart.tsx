import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  readonly label: string;
  readonly color: string;
}

/**
 * A live uPlot line chart: built once, then fed new data without rebuilding (uPlot redraws thousands
 * of points in a few milliseconds). Times are seconds since the epoch; `values` are one array per series.
 */
export function LiveChart({
  title,
  unit,
  series,
  times,
  values,
  min,
  max,
}: {
  title: string;
  unit: string;
  series: readonly ChartSeries[];
  times: readonly number[];
  values: readonly (readonly (number | null)[])[];
  min?: number;
  max?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const data = (): uPlot.AlignedData => [times as number[], ...(values as (number | null)[][])];

  // biome-ignore lint/correctness/useExhaustiveDependencies: the chart is built once per set of series; data flows in below.
  useEffect(() => {
    const element = box.current;
    if (element === null) return;
    const options: uPlot.Options = {
      width: Math.max(240, element.clientWidth),
      height: 170,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        y:
          min !== undefined || max !== undefined
            ? { range: (_u, lo, hi) => [min ?? lo, Math.max(max ?? hi, hi)] }
            : {},
      },
      axes: [
        {
          stroke: "#8a94a6",
          grid: { stroke: "#2a3142" },
          ticks: { stroke: "#2a3142" },
          space: 90,
          // Ticks closer than a second would repeat a label: show each time once.
          values: (_u, splits) =>
            splits.map((t, i) => {
              const text = clock.format(new Date(t * 1000));
              const before = splits[i - 1];
              return before !== undefined && clock.format(new Date(before * 1000)) === text ? "" : text;
            }),
        },
        {
          stroke: "#8a94a6",
          grid: { stroke: "#2a3142" },
          ticks: { stroke: "#2a3142" },
          size: 56,
          values: (_u, splits) => splits.map((v) => `${formatValue(v)}${unit === "%" ? "%" : ""}`),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          fill: `${s.color}22`,
          value: (_u: uPlot, v: number | null) => (v === null ? "-" : `${formatValue(v)} ${unit}`),
        })),
      ],
    };
    const chart = new uPlot(options, data(), element);
    plot.current = chart;
    const resize = new ResizeObserver(() =>
      chart.setSize({ width: Math.max(240, element.clientWidth), height: 170 }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = undefined;
    };
  }, [series.map((s) => s.label).join("|"), unit]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: data() reads exactly these.
  useEffect(() => {
    plot.current?.setData(data());
  }, [times, values]);

  return (
    <div className="chart">
      <div className="chart-title">{title}</div>
      <div ref={box} className="chart-box" />
    </div>
  );
}

const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

function formatValue(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return a >= 10 || a === 0 ? v.toFixed(0) : v.toFixed(1);
}
