import { formatHostPort } from "../../base/address.ts";
import { CorralError } from "../../base/errors.ts";
import { nodeLimits } from "./node-limits.ts";

const hostName = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const ipv6 = /^[0-9A-Fa-f:.]+$/;
const portText = /^\d{1,5}$/;

/**
 * Splits and checks a node's dial address. Accepts "host:port", "[v6]:port", or a bare host (or bare IPv6)
 * with `port` beside it; both empty means the node has no address (port 0). `fallbackPort` serves a bare
 * host when no port is given at all (an update that changes only the host keeps the old port).
 */
export function parseEndpoint(
  address: unknown,
  port: unknown,
  fallbackPort?: number,
): { address: string; port: number } {
  if (address !== undefined && typeof address !== "string")
    throw CorralError.invalidArgument("address", "must be a string such as 10.0.0.5:9000");
  if (port !== undefined && (typeof port !== "number" || !Number.isInteger(port)))
    throw CorralError.invalidArgument("port", "must be an integer");
  const text = (address ?? "").trim();
  if (text === "") {
    if (port !== undefined && port !== 0)
      throw CorralError.invalidArgument("address", "is empty but a port is given");
    return { address: "", port: 0 };
  }
  const { host, embeddedPort } = splitHostPort(text);
  checkHost(host);
  if (embeddedPort !== undefined && port !== undefined && port !== 0 && port !== embeddedPort)
    throw CorralError.invalidArgument(
      "port",
      `${port} disagrees with the port ${embeddedPort} in the address`,
    );
  const chosen = embeddedPort ?? (port === undefined || port === 0 ? fallbackPort : port);
  if (chosen === undefined || chosen === 0)
    throw CorralError.invalidArgument("address", `"${text}" has no port; write host:port`);
  if (chosen < 1 || chosen > 65_535) throw CorralError.invalidArgument("port", `${chosen} is not in 1-65535`);
  return { address: host, port: chosen };
}

function splitHostPort(text: string): { host: string; embeddedPort?: number } {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw CorralError.invalidArgument("address", `"${text}" has an unclosed "["`);
    const rest = text.slice(close + 1);
    if (rest === "") return { host: text.slice(1, close) };
    if (!rest.startsWith(":") || !portText.test(rest.slice(1)))
      throw CorralError.invalidArgument("address", `"${text}" must be [ipv6]:port`);
    return { host: text.slice(1, close), embeddedPort: Number(rest.slice(1)) };
  }
  const colons = text.split(":").length - 1;
  if (colons === 0) return { host: text };
  if (colons > 1) return { host: text }; // a bare IPv6 address; its port comes beside it
  const [host = "", portPart = ""] = text.split(":");
  if (!portText.test(portPart))
    throw CorralError.invalidArgument("address", `"${text}" has a malformed port`);
  return { host, embeddedPort: Number(portPart) };
}

function checkHost(host: string): void {
  if (host.length > nodeLimits.maxHostLength)
    throw CorralError.invalidArgument(
      "address",
      `host is ${host.length} characters; the limit is ${nodeLimits.maxHostLength}`,
    );
  const valid = host.includes(":") ? ipv6.test(host) : hostName.test(host);
  if (!valid) throw CorralError.invalidArgument("address", `"${host}" is not a host name or IP address`);
}

/** "host:port" for dialing, with IPv6 hosts in brackets; "" for a node with no address. */
export function formatEndpoint(node: { address: string; port: number }): string {
  return node.address === "" ? "" : formatHostPort({ host: node.address, port: node.port });
}
