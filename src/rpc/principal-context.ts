import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { anonymous, type Principal } from "../security/principal.ts";

export const principalKey = createContextKey<Principal>(anonymous, { description: "the caller" });

/** The authenticated caller of this call (set by the authorization step before the handler runs). */
export function principalOf(ctx: HandlerContext): Principal {
  return ctx.values.get(principalKey);
}
