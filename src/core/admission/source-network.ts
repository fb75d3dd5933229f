import { isIPv4, isIPv6 } from "node:net";

/**
 * The network a source address belongs to for per-network limits: its IPv4 /24 or its IPv6 /64 (what
 * one site or one customer usually holds), so that one attacker with many addresses of one network
 * counts as one. An IPv4-mapped IPv6 address counts as its IPv4 address; anything else is its own.
 */
export function sourceNetwork(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const v4 = mapped ?? address;
  if (isIPv4(v4)) return `${v4.split(".").slice(0, 3).join(".")}.0/24`;
  const bare = address.replace(/%.*$/, "");
  if (isIPv6(bare)) return `${expandIpv6(bare).slice(0, 4).join(":")}::/64`;
  return address;
}

/** The eight groups of an IPv6 address, "::" filled in, lower case without leading zeros. */
function expandIpv6(address: string): string[] {
  // A trailing dotted quad (::ffff:1.2.3.4 forms other than the mapped one) is two groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  let text = address;
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${address.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = Array(Math.max(0, 8 - left.length - right.length)).fill("0");
  return [...left, ...zeros, ...right].map((g) => Number.parseInt(g, 16).toString(16));
}
