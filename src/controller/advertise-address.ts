import { networkInterfaces } from "node:os";
import type { HostPort } from "../base/address.ts";
import { CorralError } from "../base/errors.ts";

type Interfaces = ReturnType<typeof networkInterfaces>;

const wildcard = (host: string) => host === "0.0.0.0" || host === "::";

/**
 * The address other controllers and agents reach this controller at: what it registers with the other
 * controllers, what heartbeat answers name, and what its node record shows. The operator's
 * `http.advertiseAddress` if set; else the host it binds; a controller that binds every interface
 * advertises loopback when it is alone (SQLite: nobody is told its address), and with etcd the one
 * address this machine has beyond loopback — several or none, and it must be told which, since
 * advertising loopback would make its peers dial themselves.
 */
export function chooseAdvertiseAddress(options: {
  readonly bind: HostPort;
  readonly configured?: HostPort | undefined;
  readonly withPeers: boolean;
  readonly interfaces?: Interfaces;
}): HostPort {
  if (options.configured !== undefined) return options.configured;
  if (!wildcard(options.bind.host)) return options.bind;
  if (!options.withPeers) return { host: "127.0.0.1", port: options.bind.port };
  const candidates = Object.values(options.interfaces ?? networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal && a.family === "IPv4")
    .map((a) => a.address);
  const unique = [...new Set(candidates)];
  if (unique.length === 1) return { host: unique[0] as string, port: options.bind.port };
  throw CorralError.invalidArgument(
    "http.advertiseAddress",
    `is needed with store.etcd when http.address binds every interface and this machine has ${
      unique.length === 0 ? "no address beyond loopback" : `several (${unique.join(", ")})`
    }: name the host:port other controllers and agents reach this one at`,
  );
}
