/** The eight block heights a sparkline is drawn with, lowest first. */
export const sparkBars = "▁▂▃▄▅▆▇█";

export interface SparkScale {
  readonly min: number;
  readonly max: number;
}

/**
 * The last `width` values as a sparkline, newest on the right, right-aligned (spaces on the left while
 * there are fewer values than columns). A missing value is a space. With a `scale`, values map onto it
 * (and are clamped to it); without one, onto the range of the values shown. A flat series without a
 * scale sits in the middle.
 */
export function sparkline(
  values: readonly (number | undefined)[],
  width: number,
  scale?: SparkScale,
): string {
  if (width <= 0) return "";
  const shown = values.slice(Math.max(0, values.length - width));
  const defined = shown.filter((v): v is number => v !== undefined && Number.isFinite(v));
  const min = scale?.min ?? Math.min(...defined);
  const max = scale?.max ?? Math.max(...defined);
  const top = sparkBars.length - 1;
  const bar = (value: number | undefined): string => {
    if (value === undefined || !Number.isFinite(value)) return " ";
    if (!(max > min)) return scale === undefined ? (sparkBars[top >> 1] ?? " ") : (sparkBars[0] ?? " ");
    const level = Math.round(((value - min) / (max - min)) * top);
    return sparkBars[Math.max(0, Math.min(top, level))] ?? " ";
  };
  return " ".repeat(width - shown.length) + shown.map(bar).join("");
}
