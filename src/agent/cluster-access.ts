import { CorralError } from "../core/errors.ts";
import type { CallInterceptor } from "../rpc/grpc-adapter.ts";
import { principalKey } from "../rpc/principal-context.ts";
import { describePrincipal, principalFromUri, urisFromSubjectAltName } from "../security/principal.ts";

/**
 * Services on the agent's listener that any member with a cluster certificate may call: probes,
 * discovery, and go-cart-actor's ControlPlane, which peers call on each other by design (what changes
 * state there is forwarded to the controller with the agent's own identity and checked there).
 */
const openToMembers = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "messages.ControlPlane",
]);

/**
 * Who may call an agent's mTLS listener: its controllers (acting for operators they already
 * authorized) and admins. Other nodes may not drive each other's hardware. The TLS handshake has
 * already required a certificate from the cluster's CA.
 */
export function agentListenerAccess(): CallInterceptor {
  return async (ctx, next) => {
    const certificate = ctx.call.getAuthContext().sslPeerCertificate;
    const principal = urisFromSubjectAltName(certificate?.subjectaltname)
      .map((uri) => principalFromUri(uri, certificate?.serialNumber ?? ""))
      .find((p) => p !== undefined);
    if (principal === undefined) {
      throw new CorralError("UNAUTHENTICATED", "a certificate naming a corral identity is required");
    }
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
    await next();
  };
}
