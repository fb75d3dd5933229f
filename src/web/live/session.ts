import { createContext, useContext, useSyncExternalStore } from "react";
import type { WhoAmIResponse } from "../../gen/corral/v1/session_pb.ts";
import { Role } from "../../gen/corral/v1/tokens_pb.ts";
import type { Clients } from "../api/clients.ts";
import type { ClusterSnapshot, ClusterStore } from "./cluster-store.ts";

export interface Session {
  readonly clients: Clients;
  readonly who: WhoAmIResponse;
  readonly store: ClusterStore;
  /** Whether the access table lets this role call the method (the server checks again). */
  can(path: string): boolean;
  signOut(): void;
}

export const SessionContext = createContext<Session | undefined>(undefined);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (session === undefined) throw new Error("useSession outside a signed-in page");
  return session;
}

export function useCluster(): ClusterSnapshot {
  const { store } = useSession();
  return useSyncExternalStore(store.subscribe, store.getSnapshot);
}

export const roleText: Record<Role, string> = {
  [Role.UNSPECIFIED]: "none",
  [Role.VIEWER]: "viewer",
  [Role.OPERATOR]: "operator",
  [Role.ADMIN]: "admin",
  [Role.NODE]: "node",
};

const tokenKey = "corral.token";

export const savedToken = {
  get: (): string => window.sessionStorage.getItem(tokenKey) ?? "",
  set: (token: string) => window.sessionStorage.setItem(tokenKey, token),
  clear: () => window.sessionStorage.removeItem(tokenKey),
};
