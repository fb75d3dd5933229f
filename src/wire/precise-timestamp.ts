import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";

/** A Timestamp from fractional ms (samples are due at fractions of a ms at high rates). */
export function preciseTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  const stamp = timestampFromMs(seconds * 1000);
  stamp.nanos = Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6));
  return stamp;
}
