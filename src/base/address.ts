import { CorralError } from "./errors.ts";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses `host:port`, `[v6]:port` or `http(s)://host:port` (NanoPing passes hub addresses as URLs). */
export function parseHostPort(input: string, field: string): HostPort {
  const text = input
    .trim()
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "");
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65_535) {
    throw CorralError.invalidArgument(
      field,
      `"${input}" is not an address; write host:port, e.g. 127.0.0.1:8080`,
    );
  }
  return { host, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}
