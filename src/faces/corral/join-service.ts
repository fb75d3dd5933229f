import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { CorralError } from "../../base/errors.ts";
import type { JoinRequestBook } from "../../core/admission/join-requests.ts";
import type { EventFeed } from "../../core/events/event-feed.ts";
import type { JoinService } from "../../gen/corral/v1/join_pb.ts";
import { principalOf } from "../../rpc/principal-context.ts";
import type { Admission } from "../../security/admission.ts";
import type { CertificateAuthority } from "../../security/certificate-authority.ts";
import { describePrincipal } from "../../security/principal.ts";
import type { Store } from "../../store/store.ts";
import {
  metadataMapFromMessage,
  nodeToMessage,
  resourcesFromMessage,
  servicesFromMessage,
} from "../../wire/corral-node.ts";
import type { Heartbeats } from "../face-context.ts";
import { peerHost } from "../peer.ts";
import { pendingJoinMessage } from "./join-request-message.ts";

/** What the join face touches: admission, the join requests, and the feed for watching them. */
export interface JoinServiceDeps {
  readonly admission: Admission;
  readonly joinRequests: JoinRequestBook;
  readonly feed: EventFeed;
  readonly ca: CertificateAuthority;
  readonly heartbeats: Heartbeats;
  readonly store: Store;
}

export function joinService(context: JoinServiceDeps): Partial<ServiceImpl<typeof JoinService>> {
  const { admission, joinRequests, feed, ca, heartbeats } = context;
  return {
    async join(request, ctx) {
      if (request.csrPem.trim() === "")
        throw CorralError.invalidArgument("csr_pem", "is empty; send a PEM certificate request");
      const admitted = await admission.join(
        {
          nodeId: request.nodeId,
          name: request.name,
          metadata: metadataMapFromMessage(request.metadata, "metadata"),
          address: request.address,
          csrPem: request.csrPem,
          token: request.token,
          resources: resourcesFromMessage(request.resources),
          services: servicesFromMessage(request.services, "services"),
          labels: request.labels,
          version: request.version,
          sourceAddress: peerHost(ctx),
        },
        ctx.signal,
      );
      return {
        nodeId: admitted.node.id,
        certificatePem: admitted.certificate.certificatePem,
        caCertificatePem: ca.certificatePem,
        heartbeatInterval: durationFromMs(heartbeats.nextInterval()),
        node: nodeToMessage(admitted.node),
      };
    },

    async renewCertificate(request, ctx) {
      const principal = principalOf(ctx);
      if (principal.kind !== "node")
        throw new CorralError("PERMISSION_DENIED", "only a node renews its own certificate");
      const signed = await admission.renew(principal.nodeId, request.csrPem);
      return { certificatePem: signed.certificatePem, notAfter: timestampFromMs(signed.notAfter.getTime()) };
    },

    async listJoinRequests(request) {
      const records = await joinRequests.list({ includeDecided: request.includeDecided });
      return { requests: records.map(pendingJoinMessage) };
    },

    async *watchJoinRequests(_request, ctx) {
      const from = (await context.store.revision()) + 1;
      for (const record of await joinRequests.list({ includeDecided: false })) {
        yield { request: pendingJoinMessage(record) };
      }
      for await (const event of feed.watch({
        fromRevision: from,
        kinds: ["join-request"],
        signal: ctx.signal,
      })) {
        if (event.request !== undefined) yield { request: pendingJoinMessage(event.request) };
      }
    },

    async answerJoinRequest(request, ctx) {
      const found = await joinRequests.find(request.request);
      const decided = await joinRequests.answer(
        found.id,
        request.accept,
        describePrincipal(principalOf(ctx)),
        request.reason,
      );
      return { request: pendingJoinMessage(decided) };
    },
  };
}
