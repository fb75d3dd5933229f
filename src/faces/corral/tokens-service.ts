import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { parseDuration } from "../../base/duration.ts";
import { CorralError } from "../../base/errors.ts";
import type { TokenRecord, TokenRegistry, TokenRole } from "../../core/admission/tokens.ts";
import { defaults } from "../../defaults.ts";
import { Role, type TokenInfo, TokenInfoSchema, type TokensService } from "../../gen/corral/v1/tokens_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import { describePrincipal } from "../../security/principal.ts";

const roleFromEnum: Partial<Record<Role, TokenRole>> = {
  [Role.UNSPECIFIED]: "node",
  [Role.NODE]: "node",
  [Role.VIEWER]: "viewer",
  [Role.OPERATOR]: "operator",
  [Role.ADMIN]: "admin",
};
const roleToEnum: Record<TokenRole, Role> = {
  node: Role.NODE,
  viewer: Role.VIEWER,
  operator: Role.OPERATOR,
  admin: Role.ADMIN,
};

export function tokenInfo(record: TokenRecord): TokenInfo {
  return create(TokenInfoSchema, {
    id: record.id,
    role: roleToEnum[record.role],
    description: record.description,
    createdAt: timestampFromMs(record.createdAt),
    expiresAt: timestampFromMs(record.expiresAt),
    usesAllowed: record.usesAllowed,
    usesLeft: record.usesLeft,
    revoked: record.revoked,
    createdBy: record.createdBy,
  });
}

/** What the tokens face touches: the join tokens, the CA fingerprint a join command pins, the join line. */
export interface TokensServiceDeps {
  readonly tokens: TokenRegistry;
  readonly ca: CertificateAuthority;
  /** The one-line join up to `| sh -s -- --token …`, once the web listener is up. */
  readonly installCommand?: () => string | undefined;
}

export function tokensService({
  tokens,
  ca,
  installCommand,
}: TokensServiceDeps): Partial<ServiceImpl<typeof TokensService>> {
  return {
    async createToken(request, ctx) {
      const role = roleFromEnum[request.role];
      if (role === undefined) throw CorralError.invalidArgument("role", `${request.role} is not a role`);
      const ttlMs =
        request.ttl === undefined
          ? parseDuration(defaults.identity.tokenTtl)
          : Number(request.ttl.seconds) * 1000 + Math.floor(request.ttl.nanos / 1e6);
      const { token, record } = await tokens.create({
        role,
        ttlMs,
        uses: request.uses,
        description: request.description,
        createdBy: describePrincipal(principalOf(ctx)),
        caFingerprint: ca.fingerprint,
      });
      // The CLI prints the one-line join with the token; a header, so the message stays the published one.
      const install = role === "node" ? installCommand?.() : undefined;
      if (install !== undefined) ctx.responseHeader.set("corral-install-command", install);
      return { token, info: tokenInfo(record), caFingerprint: ca.fingerprint };
    },

    async listTokens(request) {
      return { tokens: (await tokens.list(request.includeExpired)).map(tokenInfo) };
    },

    async revokeToken(request) {
      if (request.id.trim() === "")
        throw CorralError.invalidArgument("id", "is empty; give the token id (corral token ls)");
      return { info: tokenInfo(await tokens.revoke(request.id.trim())) };
    },
  };
}
