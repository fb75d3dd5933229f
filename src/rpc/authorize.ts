import type { PeerCertificate } from "node:tls";
import type { HandlerContext } from "@connectrpc/connect";
import { CorralError } from "../base/errors.ts";
import type { AuditLog } from "../core/events/audit-log.ts";
import { type AccessRule, accessRuleFor } from "../security/access-table.ts";
import { anonymous, describePrincipal, localPrincipal, type Principal } from "../security/principal.ts";
import type { PrincipalResolver } from "../security/principal-resolver.ts";
import type { ChainInterceptor } from "./call-chain.ts";
import type { GrpcHandlerContext } from "./call-context.ts";
import { principalKey, principalRecheckKey } from "./principal-context.ts";

/** Trailer detail that marks a refusal by the access table (tests tell it apart from a handler's own). */
export const deniedByTable = { "denied-by": "access-table" } as const;

export interface AuthorizeOptions {
  /** The loopback bridge trusts its callers (they have a shell on this machine); the others verify. */
  readonly listener: "bridge" | "cluster" | "web";
  readonly resolver: PrincipalResolver;
  readonly audit: AuditLog;
  readonly onAuditError: (error: unknown) => void;
}

export function methodPath(ctx: HandlerContext): string {
  return `/${ctx.service.typeName}/${ctx.method.name}`;
}

/** Decides whether `principal` may call the method under `rule`; throws the status to answer if not. */
export function checkAccess(principal: Principal, rule: AccessRule, path: string): void {
  if (rule.anonymous) return;
  if (principal.kind === "anonymous") {
    throw new CorralError(
      "UNAUTHENTICATED",
      `${path} needs a client certificate from this cluster's CA or an operator token`,
      { details: deniedByTable },
    );
  }
  if (!rule.roles.includes(principal.role)) {
    const allowed = rule.roles.length === 0 ? "nobody" : rule.roles.join(", ");
    throw new CorralError(
      "PERMISSION_DENIED",
      `${describePrincipal(principal)} (role ${principal.role}) may not call ${path}; allowed: ${allowed}`,
      { details: deniedByTable },
    );
  }
}

interface Presented {
  readonly certificate?: PeerCertificate | undefined;
  readonly authorization?: string | null;
}

/**
 * What the caller presented: read once per call (decoding the peer certificate is the dearest part,
 * and a stream's connection cannot change under it).
 */
function presented(ctx: HandlerContext, options: AuthorizeOptions): Presented {
  if (options.listener === "bridge") return {};
  const certificate =
    options.listener === "cluster"
      ? (ctx as unknown as GrpcHandlerContext).call.getAuthContext().sslPeerCertificate
      : undefined;
  return certificate !== undefined
    ? { certificate }
    : { authorization: ctx.requestHeader.get("authorization") };
}

/** Who the caller is, from the listener, its certificate, or a bearer token. */
async function identify(credential: Presented, options: AuthorizeOptions): Promise<Principal> {
  if (options.listener === "bridge") return localPrincipal;
  if (credential.certificate !== undefined) return options.resolver.fromCertificate(credential.certificate);
  if (credential.authorization != null) return options.resolver.fromBearer(credential.authorization);
  return anonymous;
}

/**
 * Runs before every handler: identify the caller, check the access table, remember the principal for
 * the handler, and write an audit entry for every call that changes state.
 */
export async function authorizeCall(
  ctx: HandlerContext,
  options: AuthorizeOptions,
  next: () => Promise<void>,
  peer = "",
): Promise<void> {
  const path = methodPath(ctx);
  const rule = accessRuleFor(path);
  let principal: Principal;
  const credential = presented(ctx, options);
  try {
    principal = await identify(credential, options);
    ctx.values.set(principalRecheckKey, () => identify(credential, options));
  } catch (error) {
    // A stale credential may still knock on the open doors (a removed node joining again).
    if (!rule.anonymous) throw error;
    principal = anonymous;
  }
  // Refused attempts by anonymous callers are not audited: anyone could fill the log with them.
  if (!rule.mutates || (principal.kind === "anonymous" && !rule.anonymous)) {
    checkAccess(principal, rule, path);
    ctx.values.set(principalKey, principal);
    return next();
  }
  let result = "OK";
  let detail: string | undefined;
  try {
    checkAccess(principal, rule, path);
    ctx.values.set(principalKey, principal);
    await next();
  } catch (error) {
    const corral = CorralError.from(error);
    result = corral.code;
    detail = corral.message;
    throw error;
  } finally {
    options.audit
      .append({
        principal: describePrincipal(principal),
        method: path,
        result,
        ...(detail === undefined ? {} : { detail }),
        ...(peer ? { peer } : {}),
      })
      .catch(options.onAuditError);
  }
}

export function authorizeCalls(options: AuthorizeOptions): ChainInterceptor {
  return (ctx, next) => authorizeCall(ctx, options, next, ctx.peer);
}
