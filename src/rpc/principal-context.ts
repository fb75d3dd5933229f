import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { anonymous, type Principal } from "../security/principal.ts";

export const principalKey = createContextKey<Principal>(anonymous, { description: "the caller" });

/**
 * Identifies the caller again from what it presented when the call began. A long-lived stream calls it
 * per message, so that revoking a certificate or removing a node ends the stream as it would refuse
 * the next call. Without a resolver (in-process calls) the principal found at the start stands.
 */
export const principalRecheckKey = createContextKey<(() => Promise<Principal>) | undefined>(undefined, {
  description: "identifies the caller again",
});

/** The authenticated caller of this call (set by the authorization step before the handler runs). */
export function principalOf(ctx: HandlerContext): Principal {
  return ctx.values.get(principalKey);
}

/** The caller as it stands now (see principalRecheckKey). */
export function recheckPrincipal(ctx: HandlerContext): Promise<Principal> {
  const recheck = ctx.values.get(principalRecheckKey);
  return recheck === undefined ? Promise.resolve(principalOf(ctx)) : recheck();
}
