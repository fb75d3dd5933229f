import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { DirectoryChange } from "../../core/ownership/ownership.ts";
import type { OwnershipFollower as Ownership } from "../../engines/ownership-follower.ts";
import {
  KeyClaimSchema,
  MemberEventType,
  type MembersService,
  type WatchMembersResponse,
  WatchMembersResponseSchema,
} from "../../gen/corral/v1/members_pb.ts";
import { callerOf } from "./caller.ts";
import { type LoadOf, type LoadSources, loadsOf, memberToMessage } from "./member-message.ts";

type Impl = ServiceImpl<typeof MembersService>;

const maxListedKeys = 100_000;

/** corral.v1.MembersService: the ownership directory for corral's tools and for actor hosts. */
/** What the members face touches: the ownership directory, and load figures when the controller keeps them. */
export interface MembersServiceDeps extends LoadSources {
  readonly ownership: Ownership;
}

export function membersService(deps: MembersServiceDeps): Partial<Impl> {
  const { ownership, facts } = deps;
  const loadSources: LoadSources = deps;
  return {
    async listMembers() {
      await ownership.start();
      const directory = ownership.directory;
      const load = await loadsOf(loadSources, true);
      return {
        members: directory.views().map((view) => memberToMessage(view, load(view.id))),
        keyCount: BigInt(directory.size),
        unownedKeyCount: BigInt(directory.unownedCount),
        revision: BigInt(ownership.revision),
      };
    },

    async *watchMembers(request, ctx) {
      if (request.fromRevision < 0n)
        throw CorralError.invalidArgument("from_revision", "must not be negative");
      await ownership.start();
      const load = await loadsOf(loadSources, false);
      for await (const change of ownership.watch({
        fromRevision: Number(request.fromRevision),
        includeClaims: request.includeClaims,
        signal: ctx.signal,
      })) {
        yield changeToMessage(change, load);
      }
    },

    async resolveOwner(request) {
      await ownership.start();
      const answer = ownership.owner(request.key);
      return {
        ...(answer.owner === undefined ? {} : { owner: memberToMessage(ownership.view(answer.owner)) }),
        reason: answer.reason ?? "",
        known: answer.known,
      };
    },

    async listKeys(request) {
      await ownership.start();
      if (request.limit < 0) throw CorralError.invalidArgument("limit", "must not be negative");
      const member = ownership.member(request.member);
      let keys = ownership.directory.keysOf(member.id);
      if (request.startAfter !== "") keys = keys.filter((key) => key > request.startAfter);
      const limit = request.limit === 0 ? maxListedKeys : Math.min(request.limit, maxListedKeys);
      return {
        member: memberToMessage(ownership.view(member)),
        keys: keys.slice(0, limit),
        more: keys.length > limit,
      };
    },

    async registerKeys(request) {
      await ownership.start();
      const { owners, added } = await ownership.registerKeys(request.keys);
      return { owners: owners.map((owner) => owner?.host ?? ""), added };
    },

    async claim(request, ctx) {
      await ownership.start();
      const caller = callerOf(ctx, facts.controllerNodeId);
      const member =
        request.member.trim() !== "" ? request.member : caller.isNode ? (caller.nodeId ?? "") : "";
      if (member === "")
        throw CorralError.invalidArgument(
          "member",
          "is empty; give the member's host:port, node id or node name",
        );
      const { owner, previous } = await ownership.claim(request.key, member, caller);
      return { owner: memberToMessage(ownership.view(owner)), previousHost: previous?.host ?? "" };
    },

    async release(request, ctx) {
      await ownership.start();
      const { owner, wasClaimed } = await ownership.release(
        request.key,
        request.forget,
        callerOf(ctx, facts.controllerNodeId),
      );
      return {
        ...(owner === undefined ? {} : { owner: memberToMessage(ownership.view(owner)) }),
        wasClaimed,
      };
    },

    async drain(request, ctx) {
      await ownership.start();
      const { member, moved } = await ownership.drain(
        request.member,
        request.draining,
        "operator",
        callerOf(ctx, facts.controllerNodeId),
      );
      return { member: memberToMessage(ownership.view(member)), keysMoved: BigInt(moved) };
    },

    async setWeight(request, ctx) {
      await ownership.start();
      if (!Number.isFinite(request.weight) || request.weight < 0)
        throw CorralError.invalidArgument("weight", "must be 0 (the default) or above");
      const weight = request.weight === 0 ? undefined : request.weight;
      const { member, moved } = await ownership.setWeight(
        request.member,
        weight,
        callerOf(ctx, facts.controllerNodeId),
      );
      return { member: memberToMessage(ownership.view(member)), keysMoved: BigInt(moved) };
    },
  };
}

function changeToMessage(change: DirectoryChange, load: LoadOf): WatchMembersResponse {
  return create(WatchMembersResponseSchema, changeFields(change, load));
}

function changeFields(change: DirectoryChange, load: LoadOf) {
  const revision = BigInt(change.revision);
  switch (change.type) {
    case "snapshot":
      return {
        type: MemberEventType.SNAPSHOT,
        revision,
        member: memberToMessage(change.member, load(change.member.id)),
      };
    case "snapshot-claim":
      return { type: MemberEventType.SNAPSHOT, revision, claim: create(KeyClaimSchema, change.claim) };
    case "synced":
      return { type: MemberEventType.SYNCED, revision };
    case "put":
      return {
        type: MemberEventType.PUT,
        revision,
        member: memberToMessage(change.member, load(change.member.id)),
      };
    case "deleted":
      return {
        type: MemberEventType.DELETED,
        revision,
        member: memberToMessage(change.member, load(change.member.id)),
      };
    case "claimed":
      return { type: MemberEventType.CLAIMED, revision, claim: create(KeyClaimSchema, change.claim) };
    case "released":
      return { type: MemberEventType.RELEASED, revision, claim: create(KeyClaimSchema, change.claim) };
  }
}
