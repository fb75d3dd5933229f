import { CorralError } from "../base/errors.ts";

export const roles = ["viewer", "operator", "admin", "node"] as const;
export type Role = (typeof roles)[number];

/** Who is calling. Every call has exactly one principal; the access table decides what it may do. */
export type Principal =
  | { readonly kind: "node"; readonly role: "node"; readonly nodeId: string; readonly serial: string }
  | {
      readonly kind: "operator";
      readonly role: Exclude<Role, "node">;
      readonly name: string;
      /** Certificate serial, or token id for a bearer token. */
      readonly credential: string;
    }
  /** A controller of this cluster, calling an agent for an operator it has already authorized. */
  | {
      readonly kind: "controller";
      readonly role: "admin";
      readonly controllerId: string;
      readonly serial: string;
    }
  /** A caller on the loopback bridge: someone with a shell on the controller's machine. */
  | { readonly kind: "local"; readonly role: "admin" }
  | { readonly kind: "anonymous" };

export const localPrincipal: Principal = { kind: "local", role: "admin" };
export const anonymous: Principal = { kind: "anonymous" };

/** How a principal is written in audit records and logs. */
export function describePrincipal(principal: Principal): string {
  switch (principal.kind) {
    case "node":
      return `node:${principal.nodeId}`;
    case "operator":
      return `${principal.role}:${principal.name}`;
    case "controller":
      return `controller:${principal.controllerId}`;
    case "local":
      return "local";
    case "anonymous":
      return "anonymous";
  }
}

/**
 * Identities live in a SAN URI of the certificate: `corral://node/<node id>` for nodes,
 * `corral://operator/<role>/<name>` for people and tools.
 */
export function nodeIdentityUri(nodeId: string): string {
  return `corral://node/${encodeURIComponent(nodeId)}`;
}

export function operatorIdentityUri(role: Exclude<Role, "node">, name: string): string {
  return `corral://operator/${role}/${encodeURIComponent(name)}`;
}

export function controllerIdentityUri(controllerId: string): string {
  return `corral://controller/${encodeURIComponent(controllerId)}`;
}

export function principalFromUri(uri: string, serial: string): Principal | undefined {
  const controller = /^corral:\/\/controller\/([^/]+)$/.exec(uri);
  if (controller?.[1] !== undefined) {
    return { kind: "controller", role: "admin", controllerId: decodeURIComponent(controller[1]), serial };
  }
  const node = /^corral:\/\/node\/([^/]+)$/.exec(uri);
  if (node?.[1] !== undefined)
    return { kind: "node", role: "node", nodeId: decodeURIComponent(node[1]), serial };
  const operator = /^corral:\/\/operator\/(viewer|operator|admin)\/([^/]+)$/.exec(uri);
  if (operator?.[1] !== undefined && operator[2] !== undefined) {
    return {
      kind: "operator",
      role: operator[1] as Exclude<Role, "node">,
      name: decodeURIComponent(operator[2]),
      credential: serial,
    };
  }
  return undefined;
}

/** Node's `subjectaltname` string looks like `DNS:a, URI:corral://node/x, IP Address:1.2.3.4`. */
export function urisFromSubjectAltName(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("URI:"))
    .map((entry) => entry.slice(4));
}

export function parseRole(value: string, field: string): Role {
  if (!(roles as readonly string[]).includes(value)) {
    throw CorralError.invalidArgument(field, `"${value}" is not a role; use one of ${roles.join(", ")}`);
  }
  return value as Role;
}
