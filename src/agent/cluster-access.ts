import type { PeerCertificate } from "node:tls";
import { CorralError } from "../base/errors.ts";
import type { CallInterceptor } from "../rpc/grpc-adapter.ts";
import { principalKey, principalRecheckKey } from "../rpc/principal-context.ts";
import { normalizeSerial } from "../security/certificate-inventory.ts";
import {
  describePrincipal,
  type Principal,
  principalFromUri,
  urisFromSubjectAltName,
} from "../security/principal.ts";

/**
 * Services on the agent's listener that any member with a cluster certificate may call: probes,
 * discovery, and go-cart-actor's ControlPlane, which peers call on each other by design (the agent
 * checks there that a peer speaks only for itself; see agent-control-plane.ts).
 */
const openToMembers = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "messages.ControlPlane",
]);

/** What the listener checks callers against: the agent's watched copy of the controller's lists. */
export interface CallerChecks {
  readonly synced: boolean;
  resolve(certificate: PeerCertificate): Promise<Principal>;
}

/**
 * Who may call an agent's mTLS listener: its controllers (acting for operators they already
 * authorized) and admins; other members only the services above. The TLS handshake has already
 * required a certificate from the cluster's CA; on top, every call is checked as the controller checks
 * it — not revoked, its node or controller still a member — against the revocation list and membership
 * the agent watches (access-view.ts). Before the agent has heard them once, only a certificate naming
 * a controller is let through (the agent's own controller must reach it to bring it up); everyone else
 * is told to try again.
 */
export function agentListenerAccess(checks: CallerChecks): CallInterceptor {
  return async (ctx, next) => {
    const certificate = ctx.call.getAuthContext().sslPeerCertificate;
    const named = namedPrincipal(certificate);
    if (certificate === undefined || named === undefined) {
      throw new CorralError("UNAUTHENTICATED", "a certificate naming a corral identity is required");
    }
    const identify = () =>
      named.kind === "controller" && !checks.synced ? Promise.resolve(named) : checks.resolve(certificate);
    const principal = await identify();
    const allowed =
      openToMembers.has(ctx.service.typeName) ||
      principal.kind === "controller" ||
      (principal.kind === "operator" && principal.role === "admin");
    if (!allowed) {
      throw new CorralError(
        "PERMISSION_DENIED",
        `${describePrincipal(principal)} may not call ${ctx.service.typeName}/${ctx.method.name} on this node; only its controller and admins may`,
        { details: { "denied-by": "agent-listener" } },
      );
    }
    ctx.values.set(principalKey, principal);
    // A stream that outlives a revocation is ended by the handlers that recheck (as on the controller).
    ctx.values.set(principalRecheckKey, identify);
    await next();
  };
}

function namedPrincipal(certificate: PeerCertificate | undefined): Principal | undefined {
  const serial = normalizeSerial(certificate?.serialNumber ?? "");
  return urisFromSubjectAltName(certificate?.subjectaltname)
    .map((uri) => principalFromUri(uri, serial))
    .find((p) => p !== undefined);
}
